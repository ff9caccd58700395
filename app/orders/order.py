"""The one order type: a row of `orders` as the code passes it around (immutable)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True, slots=True)
class Order:
    """Fields are the columns of `app.orders.tables.orders`, by key, and its refunds (a test
    holds them equal)."""

    id: str
    payment_id: str
    order_name: str
    amount: int
    currency: str
    status: str
    rejection_reason: str | None
    portone_status: str | None
    status_changed_at: datetime | None
    portone_updated_at: datetime | None
    paid_amount: int | None
    refunded_amount: int
    paid_at: datetime | None
    va_bank: str | None
    va_account_number: str | None
    va_remittee_name: str | None
    va_expires_at: datetime | None
    customer: dict[str, Any] | None
    metadata: dict[str, Any]
    return_url: str | None
    expires_at: datetime | None
    idempotency_key: str | None
    request_hash: str | None
    disputes: list[dict[str, Any]]
    compensation_status: str | None
    compensation_lease_until: datetime | None
    compensation_cancellation_id: str | None
    compensation_attempts: int
    compensation_next_attempt_at: datetime | None
    reconciled_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int  # the row version (xmin) it was read at
    # Not a column: its refunds as the API lists them, read with it (`app.refunds.store`).
    refunds: list[dict[str, Any]]

    @classmethod
    def of(cls, record: asyncpg.Record) -> Order:
        # jsonb arrives decoded: SQLAlchemy sets its codec on every connection of the pool.
        return cls(**record)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """A row of `order_history`: what one look at a payment did to its order."""

    source: str
    portone_status: str | None
    from_status: str | None
    to_status: str
    detail: str | None
