"""Opaque cursors of the order feed: where the last page ended, (updated_at, id)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime

from app.errors import ValidationFailed
from app.orders.order import Order
from app.times import as_utc

ORDER_ID = re.compile(r"\Aord_[0-9A-Z]{26}\Z")


def encode_cursor(order: Order) -> str:
    position = json.dumps([order.updated_at.isoformat(), order.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        updated_at, order_id = json.loads(raw)
        if not isinstance(order_id, str) or not ORDER_ID.match(order_id):
            raise ValueError("not an order id")
        return as_utc(datetime.fromisoformat(updated_at)), order_id
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise ValidationFailed(
            "cursor is not one this service gave out",
            errors=[{"field": "query.cursor", "message": "not a cursor from a previous page"}],
        ) from None
