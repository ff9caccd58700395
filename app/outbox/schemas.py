"""Order events as the internal API lists them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.outbox.event import OutboxEvent
from app.schemas import ApiModel


class OrderEventDelivery(ApiModel):
    event_id: str
    order_id: str
    type: str
    state: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]

    @classmethod
    def present(cls, event: OutboxEvent) -> OrderEventDelivery:
        return cls(
            event_id=event.id,
            order_id=event.order_id,
            type=event.type,
            state=event.state,
            attempts=event.attempts,
            last_error=event.last_error,
            next_attempt_at=event.next_attempt_at,
            created_at=event.created_at,
            delivered_at=event.delivered_at,
            payload=event.payload,
        )


class OrderEventDeliveries(ApiModel):
    events: list[OrderEventDelivery]
