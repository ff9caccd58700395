"""Writing order events in the transaction that changes the order.

A crash can then neither lose an event nor send one for a change that rolled back.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.events.models import OutboxEvent
from app.ids import new_id
from app.orders.models import Order
from app.orders.presenter import present_order


class Outbox:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def add(self, session: AsyncSession, order: Order) -> None:
        """Queue `order.<status>` with the order as it now stands (call before commit)."""
        await session.flush()  # brings back updated_at
        event_id = new_id("evt")
        event_type = f"order.{order.status.lower()}"
        session.add(
            OutboxEvent(
                id=event_id,
                order_id=order.id,
                type=event_type,
                payload={
                    "type": event_type,
                    "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                    "data": present_order(order, self._settings).model_dump(
                        mode="json", by_alias=True
                    ),
                },
            )
        )
