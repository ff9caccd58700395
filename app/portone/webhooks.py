"""PortOne's webhook bodies, in both versions it sends. The signature is checked first
(`app.standard_webhooks`); this reads what a genuine delivery says."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app.text import MAX_DEPTH, is_storable


class InvalidPayload(Exception):
    """A signed body that is not a webhook this service can read."""


@dataclass(frozen=True)
class WebhookEvent:
    """What a delivery claims; only `payment_id` is acted on, after a fresh fetch."""

    type: str
    payment_id: str | None
    store_id: str | None

    @property
    def is_transaction(self) -> bool:
        return self.payment_id is not None and self.type.startswith("Transaction.")


def parse_event(body: bytes) -> WebhookEvent:
    """Read a 2024-04-25 body (`type`, `data.paymentId`) or a 2024-01-01 one (`payment_id`)."""
    payload = _json_object(body)
    if "type" in payload:
        return _current(payload)
    if "payment_id" in payload:
        payment_id = _text(payload, "payment_id")
        status = payload.get("status")
        readable = isinstance(status, str) and len(status) <= 60 and is_storable(status)
        return WebhookEvent(
            f"Transaction.{status}" if readable else "Transaction", payment_id, None
        )
    raise InvalidPayload("neither a 2024-04-25 nor a 2024-01-01 webhook body")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPayload("the body is not UTF-8") from None
    if _nests_too_deep(text):
        raise InvalidPayload(f"the body nests deeper than {MAX_DEPTH} levels")
    try:
        payload = json.loads(text)
    except ValueError:
        raise InvalidPayload("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise InvalidPayload("the body is not a JSON object")
    return payload


def _nests_too_deep(text: str) -> bool:
    """Whether brackets outside strings nest deeper than MAX_DEPTH (the JSON parser
    recurses, and runs out of stack on a few thousand levels)."""
    if text.count("{") + text.count("[") <= MAX_DEPTH:
        return False  # too few brackets to nest that deep
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _current(payload: dict[str, object]) -> WebhookEvent:
    kind = payload["type"]
    if not isinstance(kind, str) or not 0 < len(kind) <= 100 or not is_storable(kind):
        raise InvalidPayload("type must be a string of 1 to 100 characters")
    data = payload.get("data")
    if not kind.startswith("Transaction."):
        return WebhookEvent(kind, None, None)
    if not isinstance(data, dict):
        raise InvalidPayload("a Transaction webhook needs a data object")
    store_id = data.get("storeId")
    return WebhookEvent(
        kind, _text(data, "paymentId"), store_id if isinstance(store_id, str) else None
    )


def _text(data: dict[str, object], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= 200 or not is_storable(value):
        raise InvalidPayload(f"{key} must be a string of 1 to 200 characters")
    return value
