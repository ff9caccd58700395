"""Undoing a rejected payment at PortOne, exactly once.

Only the transaction that moved an order to REJECTED marks its compensation OWED. Whoever
then runs it (the request that rejected, or the reconciler later) first claims a short
lease on the order in its own transaction, calls PortOne with no lock held, and records
the result. A failure leaves it OWED for the next reconciler pass; a fresh snapshot before
every attempt, and `currentCancellableAmount`, keep a retry from cancelling twice. The
order's refunded amount follows when PortOne's cancellation webhook (or the reconciler)
brings the cancelled payment through the one path.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import func, or_, select, update

from app.db import Sessions
from app.orders.models import CompensationStatus, Order, OrderEvent
from app.payments.sync import Source
from app.portone.client import PortOneClient
from app.portone.errors import PortOneApiError, PortOneError
from app.portone.models import Payment, PaymentStatus

logger = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
ALREADY_DONE = frozenset({"PAYMENT_ALREADY_CANCELLED"})


class Compensator:
    def __init__(self, sessions: Sessions, portone: PortOneClient) -> None:
        self._sessions = sessions
        self._portone = portone

    async def owed_order_ids(self) -> list[str]:
        async with self._sessions() as session:
            found = await session.scalars(
                select(Order.id).where(Order.compensation_status == CompensationStatus.OWED)
            )
            return list(found)

    async def compensate(self, order_id: str, snapshot: Payment | None = None) -> bool:
        """Run an owed compensation if no one else is; True once PortOne confirms it.

        `snapshot` is the payment as the rejecting transaction saw it a moment ago; without
        one (a retry), the payment is fetched afresh.
        """
        claimed = await self._claim(order_id)
        if claimed is None:
            return False
        payment_id, reason = claimed
        payment = snapshot
        try:
            payment = payment or await self._portone.get_payment(payment_id)
            done, detail = await self._undo(payment, reason)
        except PortOneError as exc:
            done, detail = False, f"attempt failed ({exc}); left owed for the reconciler"
        await self._record(order_id, payment, done, detail)
        return done

    async def _undo(self, payment: Payment, reason: str) -> tuple[bool, str]:
        note = f"payment failed verification ({reason})"
        if payment.status in (PaymentStatus.PAID, PaymentStatus.PARTIAL_CANCELLED):
            amount = payment.cancellable_amount
            if amount == 0:
                return True, "nothing is left to cancel at PortOne"
            try:
                await self._portone.cancel_payment(
                    payment.id, reason=note, current_cancellable_amount=amount
                )
            except PortOneApiError as exc:
                if exc.type in ALREADY_DONE:
                    return True, "PortOne says the payment is already cancelled"
                raise
            return True, f"cancelled {amount} {payment.currency} at PortOne"
        if payment.status == PaymentStatus.VIRTUAL_ACCOUNT_ISSUED:
            await self._portone.close_virtual_account(payment.id)
            return True, "closed the virtual account at PortOne"
        if payment.status == PaymentStatus.CANCELLED:
            return True, "PortOne shows the payment cancelled"
        return False, f"nothing to undo while PortOne says {payment.status}; left owed"

    async def _claim(self, order_id: str) -> tuple[str, str] | None:
        now = func.now()
        statement = (
            update(Order)
            .where(
                Order.id == order_id,
                Order.compensation_status == CompensationStatus.OWED,
                or_(Order.compensation_lease_until.is_(None), Order.compensation_lease_until < now),
            )
            .values(compensation_lease_until=now + LEASE)
            .returning(Order.payment_id, Order.rejection_reason)
        )
        async with self._sessions() as session, session.begin():
            row = (await session.execute(statement)).first()
        return None if row is None else (row[0], row[1] or "UNKNOWN")

    async def _record(
        self, order_id: str, payment: Payment | None, done: bool, detail: str
    ) -> None:
        async with self._sessions() as session, session.begin():
            order = await session.get(Order, order_id, with_for_update=True)
            assert order is not None
            order.compensation_lease_until = None
            if done:
                order.compensation_status = CompensationStatus.DONE
            session.add(
                OrderEvent(
                    order_id=order_id,
                    source=Source.COMPENSATION,
                    portone_status=payment.status if payment else None,
                    from_status=order.status,
                    to_status=order.status,
                    detail=detail,
                )
            )
        log = logger.info if done else logger.warning
        log("compensation of order %s: %s", order_id, detail)
