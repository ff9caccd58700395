"""Every table, imported in one place for Alembic and the tests."""

from app.db import Base
from app.events.models import OutboxEvent
from app.orders.models import Order, OrderEvent
from app.payments.models import ReconcilerCheckpoint, WebhookDelivery
from app.refunds.models import Refund

__all__ = [
    "Base",
    "Order",
    "OrderEvent",
    "OutboxEvent",
    "ReconcilerCheckpoint",
    "Refund",
    "WebhookDelivery",
]
