"""What the payment paths keep besides orders: webhook deliveries and the reconciler's place."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Integer,
    String,
    Table,
    Text,
    func,
)

from app.db import metadata

# A verified PortOne webhook, stored raw before it is processed.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("webhook_id", String(255), nullable=False, unique=True),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("body", Text, nullable=False),
    Column("type", String(100)),
    Column("payment_id", String(200), index=True),
    Column("status", String(16), nullable=False, index=True),
    Column("outcome", Text),
    Column("attempts", Integer, nullable=False, server_default="1"),
    Column("lease_until", DateTime(timezone=True)),
    Column("processed_at", DateTime(timezone=True)),
)

# How far PortOne's list of changed payments has been read: everything that changed
# before `changed_until`; and, while a window is being read over several passes, where
# the next page starts.
reconciler_checkpoints = Table(
    "reconciler_checkpoints",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("changed_until", DateTime(timezone=True), nullable=False),
    Column("resume_from", DateTime(timezone=True)),
    Column("window_until", DateTime(timezone=True)),
    Column("resume_page", Integer, nullable=False, server_default="0"),
)
