"""Refunds the shop asked for, one row per request (and per idempotency key)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class RefundStatus(StrEnum):
    IN_PROGRESS = "IN_PROGRESS"  # a request holds it and is talking to PortOne
    SUCCEEDED = "SUCCEEDED"
    REQUESTED = "REQUESTED"  # PortOne accepted it; the PG confirms later (webhook, reconciler)
    RETRYABLE = "RETRYABLE"  # PortOne did not answer; the same key may try again
    FAILED = "FAILED"


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (UniqueConstraint("order_id", "idempotency_key"),)
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(200))
    # The currentCancellableAmount sent to PortOne; every retry sends the same, so PortOne
    # itself refuses a second cancellation if an earlier attempt went through.
    cancellable_amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error_code: Mapped[str | None] = mapped_column(String(40))
    outcome: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
