"""`/payments/complete` and `/payments/return`: the browser says it paid; PortOne says
whether it did."""

from __future__ import annotations

from app.errors import OrderClosed, PaymentNotPaid, PaymentRejected
from app.orders.order import Order
from app.orders.status import OrderStatus
from app.payments.confirmation import Confirmation
from app.payments.sync import Observation, PaymentSync, Source, is_closed
from app.portone.errors import PaymentNotFound
from app.portone.models import PaymentStatus


class Completion:
    def __init__(self, sync: PaymentSync, confirmation: Confirmation) -> None:
        self._sync = sync
        self._confirmation = confirmation

    async def complete(
        self, payment_id: str, *, payment_token: str | None = None, tx_id: str | None = None
    ) -> Order:
        """The order when it ends PAID or AWAITING_DEPOSIT; otherwise the problem that says why."""
        order, observation = await self.verify(payment_id, payment_token=payment_token, tx_id=tx_id)
        if observation is None:
            return _outcome(order, order.portone_status, None, None)
        return _outcome_of(observation)

    async def verify(
        self, payment_id: str, *, payment_token: str | None = None, tx_id: str | None = None
    ) -> tuple[Order, Observation | None]:
        """The order after verifying its payment, confirmed first when the browser brought
        a `payment_token` (and what PortOne showed, unless the order was answered as it
        stands). Raises OrderNotFound, OrderClosed, PaymentNotPaid when PortOne has no
        such payment, PaymentNotConfirmed, and PortOne's own errors."""
        try:
            if payment_token is None:
                return await self._sync.look(payment_id, Source.COMPLETE, public=True, tx_id=tx_id)
            return await self._confirmed(payment_id, payment_token, tx_id)
        except PaymentNotFound:
            raise PaymentNotPaid(
                "PortOne has no payment with this id", portone_status=None, failure_reason=None
            ) from None

    async def _confirmed(
        self, payment_id: str, payment_token: str, tx_id: str | None
    ) -> tuple[Order, Observation | None]:
        order = await self.order_of(payment_id)
        if is_closed(order):
            raise OrderClosed("the order was cancelled or has expired: nothing was confirmed")
        if order.status != OrderStatus.PENDING:
            return order, None
        observation = await self._confirmation.confirm(order, payment_token, tx_id)
        return observation.order, observation

    async def order_of(self, payment_id: str) -> Order:
        """The order as it stands (no PortOne call, so an unknown paymentId costs nothing)."""
        return await self._sync.order_of(payment_id)


def _outcome_of(observation: Observation) -> Order:
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
    order: Order, portone_status: str | None, detail: str | None, failure_reason: str | None
) -> Order:
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
