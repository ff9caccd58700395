"""The orders table and its append-only history."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
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
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from app.db import RowVersion, metadata
from app.orders.status import OrderStatus


def _one_of(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


orders = Table(
    "orders",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("payment_id", String(200), nullable=False, unique=True),
    Column("order_name", String(200), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(24), nullable=False),
    Column("rejection_reason", String(40)),
    # As PortOne sends them: PortOne may lengthen what it sends without notice.
    Column("portone_status", Text),
    Column("status_changed_at", DateTime(timezone=True)),
    # PortOne's `updatedAt` of the snapshot applied: breaks ties of `statusChangedAt` (a
    # dispute or a partial cancellation changes a payment, not its status).
    Column("portone_updated_at", DateTime(timezone=True)),
    Column("paid_amount", BigInteger),
    Column("refunded_amount", BigInteger, nullable=False, server_default="0"),
    Column("paid_at", DateTime(timezone=True)),
    Column("va_bank", Text),
    Column("va_account_number", Text),
    Column("va_remittee_name", Text),
    Column("va_expires_at", DateTime(timezone=True)),
    Column("customer", JSONB),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # Where the redirect flow lands the customer (`GET /payments/return`).
    Column("return_url", Text),
    # When the order stops taking payment (the shop's hold on stock or a seat).
    Column("expires_at", DateTime(timezone=True)),
    Column("idempotency_key", String(255), unique=True),
    Column("request_hash", String(64)),
    # Mirrors PortOne's `disputes` of the payment, as the API shows them.
    Column("disputes", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("compensation_status", String(16), index=True),
    Column("compensation_lease_until", DateTime(timezone=True)),
    # The cancellation PortOne holds REQUESTED for this compensation (not sent again).
    Column("compensation_cancellation_id", Text),
    Column("compensation_attempts", Integer, nullable=False, server_default="0"),
    Column("compensation_next_attempt_at", DateTime(timezone=True)),
    # The reconciler's last look, so each pass starts with what it saw least recently.
    Column("reconciled_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The clock at the write, not the transaction's start: the order feed pages by it.
    Column(
        "updated_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.clock_timestamp(),
    ),
    Column("xmin", RowVersion, key="version", system=True),
    CheckConstraint(_one_of("status", OrderStatus), name="status"),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("refunded_amount >= 0", name="refunded_amount_non_negative"),
    Index("ix_orders_status_created_at", "status", "created_at"),
    Index("ix_orders_updated_at_id", "updated_at", "id"),
    # The reconciler's look for open orders past their expiry.
    Index(
        "ix_orders_status_expires_at",
        "status",
        "expires_at",
        postgresql_where=text("expires_at IS NOT NULL"),
    ),
)

order_history = Table(
    "order_history",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("order_id", ForeignKey("orders.id"), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("source", String(16), nullable=False),
    Column("portone_status", Text),
    Column("from_status", String(24)),
    Column("to_status", String(24), nullable=False),
    Column("detail", Text),
)
