"""Writing order events in the transaction that changes the order.

A crash can then neither lose an event nor send one for a change that rolled back.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import asyncpg

from app.config import Settings
from app.events.models import DeliveryState
from app.ids import new_id
from app.orders.presenter import OrderView, present_order

ADD = """INSERT INTO outbox_events (id, order_id, type, payload, state)
    VALUES ($1, $2, $3, $4, $5)"""


class Outbox:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def add(self, db: asyncpg.Connection, order: OrderView) -> None:
        """Queue `order.<status>` with the order as it now stands, in `db`'s transaction."""
        event_type = f"order.{order.status.lower()}"
        payload = {
            "type": event_type,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "data": present_order(order, self._settings).model_dump(mode="json", by_alias=True),
        }
        # As text: the jsonb codec SQLAlchemy sets on its connections encodes strings.
        await db.execute(
            ADD, new_id("evt"), order.id, event_type, json.dumps(payload), DeliveryState.PENDING
        )
