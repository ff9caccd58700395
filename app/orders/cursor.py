"""Opaque cursors of the order feed: where the last page ended, (updated_at, id)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from app.errors import ValidationFailed
from app.orders.models import Order


def encode_cursor(order: Order) -> str:
    position = json.dumps([order.updated_at.isoformat(), order.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        updated_at, order_id = json.loads(raw)
        return datetime.fromisoformat(updated_at), str(order_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise ValidationFailed(
            "cursor is not one this service gave out",
            errors=[{"field": "query.cursor", "message": "not a cursor from a previous page"}],
        ) from None
