"""A refund as the code passes it around."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg


class RefundStatus(StrEnum):
    IN_PROGRESS = "IN_PROGRESS"  # a request holds it and is talking to PortOne
    SUCCEEDED = "SUCCEEDED"
    REQUESTED = "REQUESTED"  # PortOne accepted it; the PG confirms later (webhook, reconciler)
    RETRYABLE = "RETRYABLE"  # PortOne did not answer; the same key may try again
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class Refund:
    """Fields are the columns of `app.refunds.tables.refunds` (a test holds them equal)."""

    id: str
    order_id: str
    idempotency_key: str | None
    request_hash: str
    amount: int
    reason: str
    cancellable_amount: int
    status: str
    attempts: int
    lease_until: datetime | None
    error_code: str | None
    outcome: str | None
    created_at: datetime
    updated_at: datetime
    cancellation_id: str | None
    settled_at: datetime | None

    @classmethod
    def of(cls, record: asyncpg.Record) -> Refund:
        return cls(**record)
