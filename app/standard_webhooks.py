"""Standard Webhooks (standardwebhooks.com): signing and verifying, for every sender and
receiver here: PortOne's webhooks, the order events to the shop, the sandbox's deliveries.

Verification is written by hand rather than with the `standardwebhooks` package: that
package lets `ValueError`, `binascii.Error` and `UnicodeDecodeError` escape on malformed
headers, and a webhook route must answer every malformed delivery with a 400.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence

_TIMESTAMP = re.compile(r"\A[0-9]{1,12}\Z")
_ID = re.compile(r"\A[\x21-\x7e]{1,255}\Z")
_SIGNATURE = re.compile(r"\A(v[0-9]+[a-z]*),([A-Za-z0-9+/=]+)\Z")
# Rotation sends a signature per live key: a few. Past these a header is refused unread.
MAX_SIGNATURE_HEADER = 4096
MAX_SIGNATURES = 8


class InvalidSignature(Exception):
    """Missing, malformed, stale or wrong signature headers."""


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


def headers(key: bytes, webhook_id: str, body: bytes, *, at: int | None = None) -> dict[str, str]:
    """The headers of one delivery of `body` (JSON), signed now (or `at`)."""
    timestamp = int(time.time()) if at is None else at
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, webhook_id, timestamp, body),
    }


def verify(
    keys: Sequence[bytes],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_seconds: int,
) -> str:
    """Check a delivery against every key (rotation keeps two alive); return its webhook-id.

    The signature covers the raw bytes, whatever they hold: reading them is the caller's
    business, once they are known to be genuine.
    """
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
    if len(header) > MAX_SIGNATURE_HEADER or header.count(" ") >= MAX_SIGNATURES:
        raise InvalidSignature(
            f"webhook-signature may hold {MAX_SIGNATURES} signatures"
            f" in {MAX_SIGNATURE_HEADER} characters at most"
        )
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
