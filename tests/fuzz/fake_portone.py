"""A small stateful PortOne stand-in for respx, so fuzzing never reaches the network.

Unknown payments answer 404 PAYMENT_NOT_FOUND; known ones are served as stored. Cancels
follow PortOne's rules on `currentCancellableAmount`; every other route answers success.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote

import httpx
import respx

from tests.portone_payloads import iso, payment_body

NOW = "2026-11-27T00:00:00Z"


def _error(status: int, kind: str, message: str = "") -> httpx.Response:
    return httpx.Response(status, json={"type": kind, "message": message or kind})


class FakePortOne:
    def __init__(self) -> None:
        self.payments: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []

    def install(self, router: respx.MockRouter) -> None:
        router.route().mock(side_effect=self.handle)

    def add(self, payment_id: str, **fields: Any) -> dict[str, Any]:
        body = payment_body(payment_id, **fields)
        self.payments[payment_id] = body
        return body

    def handle(self, request: httpx.Request) -> httpx.Response:
        raw = request.url.raw_path.decode("ascii").split("?", 1)[0]
        parts = [unquote(part) for part in raw.strip("/").split("/")]
        self.calls.append((request.method, "/".join(parts)))
        if parts[:1] != ["payments"]:
            return _error(404, "NOT_FOUND")
        if len(parts) == 1 and request.method == "GET":
            items = list(self.payments.values())
            page = {"number": 0, "size": max(len(items), 1), "totalCount": len(items)}
            return httpx.Response(200, json={"items": items, "page": page})
        payment_id, action = parts[1], "/".join(parts[2:])
        if action == "pre-register" and request.method == "POST":
            return httpx.Response(200, json={})
        payment = self.payments.get(payment_id)
        if payment is None:
            return _error(404, "PAYMENT_NOT_FOUND", f"no payment {payment_id}")
        if action == "" and request.method == "GET":
            return httpx.Response(200, json=payment)
        if action == "cancel" and request.method == "POST":
            return self._cancel(payment, json.loads(request.content or b"{}"))
        if action == "virtual-account/close" and request.method == "POST":
            payment["status"] = "CANCELLED"
            return httpx.Response(200, json={"closedAt": NOW})
        return _error(404, "NOT_FOUND")

    def _cancel(self, payment: dict[str, Any], body: dict[str, Any]) -> httpx.Response:
        amount = payment["amount"]
        left = amount["total"] - amount["cancelled"]
        if payment["status"] not in {"PAID", "PARTIAL_CANCELLED"} or left <= 0:
            return _error(409, "PAYMENT_ALREADY_CANCELLED")
        expected = body.get("currentCancellableAmount")
        if expected is not None and expected != left:
            return _error(409, "CANCELLABLE_AMOUNT_CONSISTENCY_BROKEN")
        requested = body.get("amount", left)
        if not isinstance(requested, int) or requested <= 0 or requested > left:
            return _error(400, "CANCEL_AMOUNT_EXCEEDS_CANCELLABLE_AMOUNT")
        amount["cancelled"] += requested
        payment["status"] = "CANCELLED" if requested == left else "PARTIAL_CANCELLED"
        payment["statusChangedAt"] = iso_now_after(payment["statusChangedAt"])
        cancellation = {
            "status": "SUCCEEDED",
            "id": f"cancel-{len(self.calls)}",
            "totalAmount": requested,
            "taxFreeAmount": 0,
            "vatAmount": 0,
            "reason": str(body.get("reason", "")),
            "requestedAt": NOW,
            "cancelledAt": NOW,
        }
        return httpx.Response(200, json={"cancellation": cancellation})


def iso_now_after(previous: str) -> str:
    """A statusChangedAt strictly later than `previous`, so the new snapshot is never stale."""
    at = datetime.fromisoformat(previous.replace("Z", "+00:00")) + timedelta(seconds=1)
    return iso(at)
