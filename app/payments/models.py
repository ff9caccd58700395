"""What the payment paths keep besides orders: webhook deliveries and the reconciler's place."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, DateTime, Identity, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class DeliveryStatus(StrEnum):
    PROCESSING = "PROCESSING"
    PROCESSED = "PROCESSED"
    IGNORED = "IGNORED"
    INVALID = "INVALID"
    FAILED = "FAILED"


class WebhookDelivery(Base):
    """A verified PortOne webhook, stored raw before it is processed."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(255), unique=True)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    body: Mapped[str] = mapped_column(Text)
    type: Mapped[str | None] = mapped_column(String(100))
    payment_id: Mapped[str | None] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    outcome: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ReconcilerCheckpoint(Base):
    """Up to when PortOne's list of changed payments has been read."""

    __tablename__ = "reconciler_checkpoints"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    changed_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
