"""Writing order events in the transaction that changes the order.

A crash can then neither lose an event nor send one for a change that rolled back.
"""

from __future__ import annotations

import asyncpg

from app.config import Settings
from app.ids import new_id
from app.orders.order import Order
from app.orders.schemas import OrderOut
from app.outbox import store
from app.times import rfc3339, utc_now


class Outbox:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def add(
        self, db: asyncpg.Connection, order: Order, event_type: str | None = None
    ) -> None:
        """Queue `event_type` (by default `order.<status>`) with the order as it now stands,
        in `db`'s transaction."""
        event_type = event_type or f"order.{order.status.lower()}"
        payload = {
            "type": event_type,
            "timestamp": rfc3339(utc_now()),
            "data": OrderOut.present(order, self._settings).model_dump(mode="json", by_alias=True),
        }
        await store.add(db, new_id("evt"), order.id, event_type, payload)
