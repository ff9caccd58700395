"""The one path: fetch the payment from PortOne, then lock the order, apply, commit.

`/payments/complete`, the webhook and the reconciler all come through `PaymentSync`;
none of them has its own copy of the rules in `app.payments.rules`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select

from app import logs, metrics
from app.db import Sessions
from app.errors import OrderNotFound
from app.events.outbox import Outbox
from app.orders.models import CompensationStatus, Order, OrderEvent, OrderStatus
from app.payments.rules import Decision, OrderTerms, Policy, decide
from app.portone.client import PortOneClient
from app.portone.errors import PortOneUnavailable
from app.portone.models import Payment

logger = logging.getLogger(__name__)

PAID_STATUSES = frozenset({OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED})


class Source(StrEnum):
    COMPLETE = "complete"
    WEBHOOK = "webhook"
    RECONCILE = "reconcile"
    REFUND = "refund"
    COMPENSATION = "compensation"


@dataclass(frozen=True)
class Observation:
    """An applied snapshot: the order as committed, and what the snapshot did to it."""

    order: Order
    payment: Payment
    decision: Decision
    from_status: str

    @property
    def changed(self) -> bool:
        return self.order.status != self.from_status


CompensationHook = Callable[[str, Payment], Awaitable[object]]


class PaymentSync:
    def __init__(
        self,
        sessions: Sessions,
        portone: PortOneClient,
        policy: Policy,
        *,
        auto_cancel: bool,
        on_compensation_owed: CompensationHook | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self._sessions = sessions
        self._portone = portone
        self._policy = policy
        self._auto_cancel = auto_cancel
        self._on_compensation_owed = on_compensation_owed
        self._outbox = outbox

    async def sync(self, payment_id: str, source: Source) -> Observation:
        """Fetch PortOne's truth (no transaction open), then apply it."""
        payment = await self._portone.get_payment(payment_id)
        return await self.apply(payment_id, payment, source)

    async def apply(self, payment_id: str, payment: Payment, source: Source) -> Observation:
        logs.bind(payment_id=payment_id)
        if payment.id != payment_id:
            # Never act on an answer about another payment: that would cancel someone else's.
            raise PortOneUnavailable(f"PortOne answered for payment {payment.id!r}")
        async with self._sessions() as session, session.begin():
            order = await session.scalar(
                select(Order).where(Order.payment_id == payment_id).with_for_update()
            )
            if order is None:
                raise OrderNotFound(f"no order has paymentId {payment_id}")
            logs.bind(order_id=order.id)
            from_status = order.status
            decision = decide(payment, _terms(order), self._policy)
            if not decision.stale:
                self._apply_decision(order, payment, decision)
            if self._outbox is not None and order.status != from_status:
                await self._outbox.add(session, order)
            session.add(
                OrderEvent(
                    order_id=order.id,
                    source=source,
                    portone_status=payment.status,
                    from_status=from_status,
                    to_status=order.status,
                    detail=decision.detail,
                )
            )
        observation = Observation(order, payment, decision, from_status)
        _count(observation)
        # Only the transaction that rejected the payment owes its compensation.
        owed = (
            decision.rejection is not None and order.compensation_status == CompensationStatus.OWED
        )
        if owed and self._on_compensation_owed is not None:
            await self._on_compensation_owed(order.id, payment)
        return observation

    def _apply_decision(self, order: Order, payment: Payment, decision: Decision) -> None:
        order.status = decision.to_status
        order.portone_status = payment.status
        if payment.status_changed_at is not None:
            order.status_changed_at = payment.status_changed_at
        order.refunded_amount = payment.amount.cancelled
        if decision.rejection is not None:
            order.rejection_reason = decision.rejection
            order.compensation_status = (
                CompensationStatus.OWED if self._auto_cancel else CompensationStatus.DISABLED
            )
            return
        if order.status in PAID_STATUSES:
            order.paid_at = payment.paid_at or order.paid_at
            order.paid_amount = payment.amount.paid
        method = payment.method
        if method is not None and method.is_virtual_account and method.account_number:
            order.va_bank = method.bank
            order.va_account_number = method.account_number
            order.va_remittee_name = method.remittee_name
            order.va_expires_at = method.expired_at


def _terms(order: Order) -> OrderTerms:
    return OrderTerms(order.amount, order.currency, order.status, order.status_changed_at)


def _count(observation: Observation) -> None:
    decision = observation.decision
    if decision.stale:
        outcome = "stale"
    elif observation.changed:
        outcome = observation.order.status.lower()
    else:
        outcome = "unchanged"
    metrics.verifications.labels(outcome, decision.rejection or "").inc()
    if observation.changed:
        logger.info(
            "order %s: %s -> %s",
            observation.order.id,
            observation.from_status,
            observation.order.status,
            extra={"portone_status": observation.payment.status, "detail": decision.detail},
        )
