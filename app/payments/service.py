"""`/payments/complete`: the browser says it paid; PortOne says whether it did."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from app.errors import OrderNotFound, PaymentNotPaid, PaymentRejected
from app.orders import rows
from app.orders.models import OrderStatus
from app.orders.rows import OrderRow
from app.payments.sync import Observation, PaymentSync, Source
from app.portone.errors import PaymentNotFound
from app.portone.models import PaymentStatus

ANSWERED_FROM_DATABASE = frozenset(
    {
        OrderStatus.PAID,
        OrderStatus.REJECTED,
        OrderStatus.PARTIALLY_REFUNDED,
        OrderStatus.REFUNDED,
        OrderStatus.CANCELLED,
    }
)


async def complete_payment(engine: AsyncEngine, sync: PaymentSync, payment_id: str) -> OrderRow:
    """The order when it ends PAID or AWAITING_DEPOSIT; otherwise the problem that says why."""
    order = await rows.find_by_payment_id(engine, payment_id)
    if order is None:
        raise OrderNotFound(f"no order has paymentId {payment_id}")
    if order.status in ANSWERED_FROM_DATABASE:
        # Settled orders change only through webhooks and the reconciler; no PortOne call.
        return _outcome(order, order.portone_status, None, None)
    try:
        observation = await sync.sync(payment_id, Source.COMPLETE, seen=order)
    except PaymentNotFound:
        raise PaymentNotPaid(
            "PortOne has no payment with this id", portone_status=None, failure_reason=None
        ) from None
    return _outcome_of(observation)


def _outcome_of(observation: Observation) -> OrderRow:
    payment = observation.payment
    failure_reason = None
    if payment.status == PaymentStatus.FAILED:
        failure_reason = (payment.failure and payment.failure.reason) or "unknown"
    decision = observation.decision
    # A rejection made by a concurrent request is described from the order, not this snapshot.
    rejected_elsewhere = observation.order.status == OrderStatus.REJECTED and not decision.rejection
    detail = None if rejected_elsewhere else decision.detail
    return _outcome(observation.order, payment.status, detail, failure_reason)


def _outcome(
    order: OrderRow, portone_status: str | None, detail: str | None, failure_reason: str | None
) -> OrderRow:
    if order.status in (OrderStatus.PAID, OrderStatus.AWAITING_DEPOSIT):
        return order
    if order.status == OrderStatus.REJECTED:
        raise PaymentRejected(
            detail or f"payment failed verification ({order.rejection_reason})",
            reason=order.rejection_reason or "UNKNOWN",
        )
    raise PaymentNotPaid(
        detail or f"order is {order.status}",
        portone_status=portone_status,
        failure_reason=failure_reason,
    )
