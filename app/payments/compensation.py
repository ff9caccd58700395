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

from app.db import Database
from app.orders import store
from app.orders.order import HistoryEntry
from app.orders.status import CompensationStatus
from app.payments.sync import Source
from app.portone.client import PortOneClient
from app.portone.errors import PortOneApiError, PortOneError
from app.portone.models import Payment, PaymentStatus

logger = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
ALREADY_DONE = frozenset({"PAYMENT_ALREADY_CANCELLED"})


class Compensator:
    def __init__(self, database: Database, portone: PortOneClient) -> None:
        self._database = database
        self._portone = portone

    async def owed_order_ids(self) -> list[str]:
        async with self._database.connect() as db:
            return await store.owed_compensations(db)

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
        async with self._database.connect() as db:
            return await store.claim_compensation(db, order_id, LEASE)

    async def _record(
        self, order_id: str, payment: Payment | None, done: bool, detail: str
    ) -> None:
        outcome = CompensationStatus.DONE if done else CompensationStatus.OWED
        async with self._database.transaction() as db:
            status = await store.end_compensation_attempt(db, order_id, outcome)
            portone_status = payment.status if payment else None
            entry = HistoryEntry(Source.COMPENSATION, portone_status, status, status, detail)
            await store.add_history(db, order_id, entry)
        log = logger.info if done else logger.warning
        log("compensation of order %s: %s", order_id, detail)
