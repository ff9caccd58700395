"""Standard Webhooks verification, strict about every header, and PortOne's two body versions.

Written by hand rather than with the `standardwebhooks` package: that package lets
`ValueError`, `binascii.Error` and `UnicodeDecodeError` escape on malformed headers,
and a webhook route must answer every malformed delivery with a 400, never a 5xx.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_TIMESTAMP = re.compile(r"\A[0-9]{1,12}\Z")
_ID = re.compile(r"\A[\x21-\x7e]{1,255}\Z")
_SIGNATURE = re.compile(r"\A(v[0-9]+[a-z]*),([A-Za-z0-9+/=]+)\Z")


class InvalidSignature(Exception):
    """Missing, malformed, stale or wrong signature headers."""


class InvalidPayload(Exception):
    """A signed body that is not a webhook this service can read."""


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret; raises ValueError for anything else."""
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook secret must be whsec_ followed by base64") from exc


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one key."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    keys: Sequence[bytes],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_seconds: int,
) -> str:
    """Check a delivery against every key (rotation keeps two alive); return its webhook-id."""
    headers = {name.lower(): value for name, value in headers.items()}
    webhook_id = _header(headers, "webhook-id")
    timestamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    if not _ID.match(webhook_id):
        raise InvalidSignature("webhook-id is malformed")
    if not _TIMESTAMP.match(timestamp):
        raise InvalidSignature("webhook-timestamp must be whole seconds since the epoch")
    if abs(now - int(timestamp)) > tolerance_seconds:
        raise InvalidSignature("webhook-timestamp is outside the accepted window")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSignature("the body is not UTF-8") from None
    presented = _v1_signatures(signatures)
    expected = [sign(key, webhook_id, int(timestamp), body).encode() for key in keys]
    # Compare every pair without an early exit, so timing tells nothing about a near match.
    matched = False
    for candidate in presented:
        for signature in expected:
            matched |= hmac.compare_digest(candidate, signature)
    if not matched:
        raise InvalidSignature("no signature matches")
    return webhook_id


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise InvalidSignature(f"{name} header is missing")
    if not value.isascii():
        raise InvalidSignature(f"{name} header is not ASCII")
    return value


def _v1_signatures(header: str) -> list[bytes]:
    signatures = []
    for entry in header.split(" "):
        match = _SIGNATURE.match(entry)
        if match is None:
            raise InvalidSignature("webhook-signature is malformed")
        version, value = match.groups()
        try:
            base64.b64decode(value, validate=True)
        except binascii.Error:
            raise InvalidSignature("webhook-signature is not base64") from None
        if version == "v1":
            signatures.append(f"v1,{value}".encode())
    return signatures


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
    try:
        payload = json.loads(body)
    except ValueError:
        raise InvalidPayload("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise InvalidPayload("the body is not a JSON object")
    if "type" in payload:
        return _current(payload)
    if "payment_id" in payload:
        payment_id = _text(payload, "payment_id")
        status = payload.get("status")
        readable = isinstance(status, str) and len(status) <= 60 and _storable(status)
        return WebhookEvent(
            f"Transaction.{status}" if readable else "Transaction", payment_id, None
        )
    raise InvalidPayload("neither a 2024-04-25 nor a 2024-01-01 webhook body")


def _current(payload: dict[str, object]) -> WebhookEvent:
    kind = payload["type"]
    if not isinstance(kind, str) or not 0 < len(kind) <= 100 or not _storable(kind):
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
    if not isinstance(value, str) or not 0 < len(value) <= 200 or not _storable(value):
        raise InvalidPayload(f"{key} must be a string of 1 to 200 characters")
    return value


def _storable(value: str) -> bool:
    """No NUL and no lone surrogate: what a database can keep and look up."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value
