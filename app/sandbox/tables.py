"""The sandbox's own table: what its emulated PortOne knows, kept across restarts."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, String, Table, func
from sqlalchemy.dialects.postgresql import JSONB

from app.db import metadata

# One row a payment id: its payment (`EmulatedPayment.state()`), and a pre-registration.
sandbox_payments = Table(
    "sandbox_payments",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("state", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
