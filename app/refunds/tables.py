"""Refunds the shop asked for, one row per request (and per idempotency key)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)

from app.db import metadata

refunds = Table(
    "refunds",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("order_id", ForeignKey("orders.id"), nullable=False, index=True),
    Column("idempotency_key", String(255)),
    Column("request_hash", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("reason", String(200), nullable=False),
    # The currentCancellableAmount sent to PortOne; every retry sends the same, so PortOne
    # itself refuses a second cancellation if an earlier attempt went through.
    Column("cancellable_amount", BigInteger, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False, server_default="1"),
    Column("lease_until", DateTime(timezone=True)),
    Column("error_code", String(40)),
    Column("outcome", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # PortOne's, once it answered; a cancellation belongs to one refund at most (a
    # compensation's is never a refund's: a rejected order takes no refunds).
    Column("cancellation_id", Text, unique=True),
    Column("settled_at", DateTime(timezone=True)),  # when it became SUCCEEDED or FAILED
    UniqueConstraint("order_id", "idempotency_key"),
)
