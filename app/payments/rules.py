"""The order rules: what a PortOne payment snapshot does to an order. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from app.orders.status import WITHOUT_MONEY, CompensationStatus, OrderStatus
from app.portone.models import CancellationStatus, Payment, PaymentStatus

S = OrderStatus
P = PaymentStatus

# (order status, PortOne status) -> the order's next status. Anything else stays put.
TRANSITIONS: dict[tuple[str, str], OrderStatus] = {
    (S.PENDING, P.VIRTUAL_ACCOUNT_ISSUED): S.AWAITING_DEPOSIT,
    (S.PENDING, P.PAID): S.PAID,
    (S.AWAITING_DEPOSIT, P.PAID): S.PAID,
    (S.PENDING, P.CANCELLED): S.CANCELLED,
    (S.AWAITING_DEPOSIT, P.CANCELLED): S.CANCELLED,
    (S.PAID, P.PARTIAL_CANCELLED): S.PARTIALLY_REFUNDED,
    (S.PAID, P.CANCELLED): S.REFUNDED,
    (S.PARTIALLY_REFUNDED, P.CANCELLED): S.REFUNDED,
    # A PAID we never saw, already partly cancelled: verified like a PAID, then refunded.
    (S.PENDING, P.PARTIAL_CANCELLED): S.PARTIALLY_REFUNDED,
    (S.AWAITING_DEPOSIT, P.PARTIAL_CANCELLED): S.PARTIALLY_REFUNDED,
}

# PortOne statuses that mean money was taken or promised: the payment must match the order.
VERIFIED_STATUSES = frozenset({P.PAID, P.VIRTUAL_ACCOUNT_ISSUED, P.PARTIAL_CANCELLED})


class Rejection(StrEnum):
    STORE_MISMATCH = "STORE_MISMATCH"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
    TEST_CHANNEL = "TEST_CHANNEL"
    ORDER_CLOSED = "ORDER_CLOSED"


@dataclass(frozen=True)
class Policy:
    store_id: str
    accept_test_payments: bool


@dataclass(frozen=True)
class OrderTerms:
    """What the shop expects and where the order stands."""

    amount: int
    currency: str
    status: str
    status_changed_at: datetime | None
    updated_at: datetime | None = None  # PortOne's, of the snapshot applied
    closed: bool = False  # cancelled, or past its expiry: it takes no more money


@dataclass(frozen=True)
class Decision:
    to_status: str
    detail: str
    rejection: Rejection | None = None
    stale: bool = False


def verify_payment(payment: Payment, order: OrderTerms, policy: Policy) -> Decision | None:
    """The first check the payment fails, as a rejection; None when it matches the order."""
    if payment.store_id != policy.store_id:
        return _rejected(Rejection.STORE_MISMATCH, f"payment belongs to store {payment.store_id}")
    if payment.currency != order.currency:
        return _rejected(
            Rejection.CURRENCY_MISMATCH, f"paid in {payment.currency}, order is in {order.currency}"
        )
    if payment.amount.total != order.amount:
        return _rejected(
            Rejection.AMOUNT_MISMATCH,
            f"paid {payment.amount.total} {payment.currency}, order is {order.amount} "
            f"{order.currency}",
        )
    channel_type = payment.channel.type if payment.channel else None
    if channel_type != "LIVE" and not policy.accept_test_payments:
        return _rejected(Rejection.TEST_CHANNEL, f"paid on a {channel_type or 'unknown'} channel")
    return None


def decide(payment: Payment, order: OrderTerms, policy: Policy) -> Decision:
    """Where the order goes on this snapshot; its status is unchanged unless a rule moves it."""
    if _is_older(payment, order):
        return Decision(
            order.status, "older than the snapshot already applied; ignored", stale=True
        )
    target = TRANSITIONS.get((order.status, payment.status), order.status)
    if payment.status in VERIFIED_STATUSES and order.status in WITHOUT_MONEY:
        rejection = verify_payment(payment, order, policy)
        if rejection is not None:
            return rejection
        # Money that arrives for a closed order is given back; what an order took before
        # it closed (an issued virtual account seen again) is not new money.
        if order.closed and (order.status == S.CANCELLED or target != order.status):
            return _rejected(
                Rejection.ORDER_CLOSED,
                f"{_describe(payment)}, but the order was closed (cancelled or expired)",
            )
    return Decision(target, _describe(payment))


def _rejected(reason: Rejection, detail: str) -> Decision:
    return Decision(S.REJECTED, detail, rejection=reason)


def _is_older(payment: Payment, order: OrderTerms) -> bool:
    """Older than the snapshot applied: by `statusChangedAt`, and at an equal one by
    `updatedAt` (a dispute or a partial cancellation changes a payment, not its status).
    A time either side lacks decides nothing."""
    return _before(
        (payment.status_changed_at, payment.updated_at),
        (order.status_changed_at, order.updated_at),
    )


def _before(
    snapshot: tuple[datetime | None, datetime | None],
    applied: tuple[datetime | None, datetime | None],
) -> bool:
    for ours, theirs in zip(snapshot, applied, strict=True):
        if ours is None or theirs is None:
            return False
        if ours != theirs:
            return ours < theirs
    return False


def _describe(payment: Payment) -> str:
    if payment.status == P.FAILED and payment.failure is not None:
        return f"PortOne: FAILED ({payment.failure.reason or 'no reason given'})"
    amount = payment.amount
    text = f"PortOne: {payment.status} {amount.total} {payment.currency}"
    if amount.cancelled:
        text += f", {amount.cancelled} cancelled"
    return text


def settle_compensation(
    status: str | None, held: str | None, payment: Payment
) -> tuple[CompensationStatus, str] | None:
    """A compensation PortOne held REQUESTED, once PortOne has settled it: its new status
    and why; None while it is not settled (or none is held)."""
    if status != CompensationStatus.REQUESTED:
        return None
    if payment.status == P.CANCELLED:
        return CompensationStatus.DONE, "PortOne shows the payment cancelled"
    cancellation = payment.cancellation(held) if held else None
    if cancellation is None:
        return None
    if cancellation.status == CancellationStatus.SUCCEEDED:
        # The held one may have been partial (a console cancellation the compensation
        # waited for): done only when nothing is left.
        left = payment.cancellable_amount
        if left:
            return CompensationStatus.OWED, (
                f"PortOne's cancellation {held} SUCCEEDED, {left} {payment.currency} "
                "still to cancel; owed again"
            )
        return CompensationStatus.DONE, f"PortOne's cancellation {held} SUCCEEDED"
    if cancellation.status == CancellationStatus.FAILED:
        return CompensationStatus.OWED, f"PortOne's cancellation {held} FAILED; owed again"
    return None
