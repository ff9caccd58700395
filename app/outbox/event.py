"""An order event as the outbox holds it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg


class EventStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # the last attempt failed; retried until next_attempt_at is null


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """Fields are the columns of `app.outbox.tables.outbox_events` (a test holds them equal)."""

    seq: int
    id: str  # the webhook-id of every attempt
    order_id: str
    type: str
    payload: dict[str, Any]
    created_at: datetime
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    delivered_at: datetime | None

    @classmethod
    def of(cls, record: asyncpg.Record) -> OutboxEvent:
        return cls(**record)
