"""Orders and their append-only event log."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    AWAITING_DEPOSIT = "AWAITING_DEPOSIT"
    PAID = "PAID"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"


class CompensationStatus(StrEnum):
    OWED = "OWED"
    DONE = "DONE"
    DISABLED = "DISABLED"  # AUTO_CANCEL_ON_MISMATCH=false: left to a human


def _one_of(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(_one_of("status", OrderStatus), name="status"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("refunded_amount >= 0", name="refunded_amount_non_negative"),
        Index("ix_orders_status_created_at", "status", "created_at"),
        Index("ix_orders_updated_at_id", "updated_at", "id"),
    )
    # RETURNING brings back updated_at with each UPDATE, so rows stay readable after commit.
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    payment_id: Mapped[str] = mapped_column(String(200), unique=True)
    order_name: Mapped[str] = mapped_column(String(200))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(24), default=OrderStatus.PENDING)
    rejection_reason: Mapped[str | None] = mapped_column(String(40))

    portone_status: Mapped[str | None] = mapped_column(Text)
    status_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    paid_amount: Mapped[int | None] = mapped_column(BigInteger)
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # As PortOne sends them: PortOne may lengthen what it sends without notice.
    va_bank: Mapped[str | None] = mapped_column(Text)
    va_account_number: Mapped[str | None] = mapped_column(Text)
    va_remittee_name: Mapped[str | None] = mapped_column(Text)
    va_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    customer: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, default=dict, server_default=text("'{}'::jsonb")
    )

    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))

    compensation_status: Mapped[str | None] = mapped_column(String(16), index=True)
    compensation_lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The clock at the write, not the transaction's start: the order feed pages by it.
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True),
        server_default=func.clock_timestamp(),
        onupdate=func.clock_timestamp(),
    )


class OrderEvent(Base):
    """One observation of an order's payment; rows are only ever inserted."""

    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    source: Mapped[str] = mapped_column(String(16))
    portone_status: Mapped[str | None] = mapped_column(Text)
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str] = mapped_column(String(24))
    detail: Mapped[str | None] = mapped_column(Text)
