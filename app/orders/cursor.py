"""Opaque cursors of the order feed: where the last page ended, (updated_at, id)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

from app.errors import ValidationFailed
from app.orders.models import Order

ORDER_ID = re.compile(r"\Aord_[0-9A-Z]{26}\Z")


def as_utc(at: datetime) -> datetime:
    """An instant in UTC (naive means UTC); ValueError when UTC cannot hold it."""
    try:
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range") from None


RFC3339 = re.compile(r"\A\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z")


def rfc3339(value: object) -> object:
    """Only an RFC 3339 time with its offset, not the other forms pydantic would take."""
    if not isinstance(value, str) or not RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-11-27T00:00:00Z")
    return value


UtcDatetime = Annotated[datetime, BeforeValidator(rfc3339), AfterValidator(as_utc)]


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
