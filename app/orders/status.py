"""Where an order stands, and where its compensation stands."""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    AWAITING_DEPOSIT = "AWAITING_DEPOSIT"
    PAID = "PAID"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"


WAITING = frozenset({OrderStatus.PENDING, OrderStatus.AWAITING_DEPOSIT})
"""The order waits for its money: the statuses a shop may still close, and the
reconciler re-reads."""

WITHOUT_MONEY = WAITING | {OrderStatus.CANCELLED}
"""The order holds no money: a payment PortOne took for it is verified, and given back
when the order no longer takes money (closed)."""


class CompensationStatus(StrEnum):
    """Undoing a rejected payment at PortOne: owed until PortOne shows it done."""

    OWED = "OWED"  # to be sent (again, after a FAILED cancellation, with backoff)
    REQUESTED = "REQUESTED"  # PortOne holds a REQUESTED cancellation; never sent twice
    DONE = "DONE"
    DISABLED = "DISABLED"  # AUTO_CANCEL_ON_MISMATCH=false: left to a human
