"""Order events as the internal API lists them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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


class OrderEventDeliveries(ApiModel):
    events: list[OrderEventDelivery]
