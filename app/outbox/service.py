"""Looking into the outbox, and sending an event again."""

from __future__ import annotations

from app.db import Database
from app.errors import EventNotFound
from app.outbox import store
from app.outbox.event import EventStatus, OutboxEvent


class OutboxEvents:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def by_state(self, state: EventStatus, limit: int) -> list[OutboxEvent]:
        async with self._database.connect() as db:
            return await store.by_state(db, state, limit)

    async def of_order(self, order_id: str) -> list[OutboxEvent]:
        async with self._database.connect() as db:
            return await store.of_order(db, order_id)

    async def redeliver_failed(self, order_id: str | None) -> int:
        """Every failed event (of `order_id`, or of all) due now, each order's in order."""
        async with self._database.connect() as db:
            return await store.redeliver_failed(db, order_id)

    async def redeliver(self, event_id: str) -> OutboxEvent:
        """Due now, whatever its state; the delivery worker sends it on its next pass."""
        async with self._database.connect() as db:
            event = await store.redeliver(db, event_id)
        if event is None:
            raise EventNotFound(f"no order event {event_id}")
        return event
