"""Every table, imported in one place: Alembic and the tests see the whole schema here.

The sandbox's table is created everywhere (one schema for every mode) and used only in
sandbox mode.
"""

from app.db import metadata
from app.orders.tables import order_history, orders
from app.outbox.tables import outbox_events
from app.payments.tables import reconciler_checkpoints, webhook_deliveries
from app.refunds.tables import refunds
from app.sandbox.tables import sandbox_payments

__all__ = [
    "metadata",
    "order_history",
    "orders",
    "outbox_events",
    "reconciler_checkpoints",
    "refunds",
    "sandbox_payments",
    "webhook_deliveries",
]
