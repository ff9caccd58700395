"""The transactional outbox: the order events waiting to be delivered to the shop."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from app.db import metadata

outbox_events = Table(
    "outbox_events",
    metadata,
    Column("seq", BigInteger, Identity(), primary_key=True),
    Column("id", String(40), nullable=False, unique=True),  # the webhook-id, every attempt
    Column("order_id", ForeignKey("orders.id"), nullable=False, index=True),
    Column("type", String(40), nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), server_default=func.now()),
    Column("last_error", Text),
    Column("delivered_at", DateTime(timezone=True)),
    Index("ix_outbox_events_due", "state", "next_attempt_at"),
)
