"""A payment at a mocked PortOne that cancels the way the real one does, and the steps of
the refund tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import respx

from tests.helpers import INTERNAL, create_order
from tests.portone_payloads import payment_body

ACCOUNT = {"bank": "KOOKMIN", "number": "123456789012", "holderName": "Kim Waffle"}


@dataclass
class PortOnePayment:
    """One payment at a mocked PortOne that cancels the way the real one does.

    A cancel is refused with CANCELLABLE_AMOUNT_CONSISTENCY_BROKEN unless its
    `currentCancellableAmount` is what is left, so a duplicate can never go through.
    """

    portone: respx.MockRouter
    payment_id: str
    total: int = 10_000
    cancelled: int = 0
    virtual_account: bool = False
    cancellation_status: str = "SUCCEEDED"
    unavailable_once: bool = False  # the next cancel meets a 503 and does nothing
    answer_lost_once: bool = False  # the next cancel goes through but its answer times out
    changed_at: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(hours=1))
    fetch: respx.Route = field(init=False)
    cancel: respx.Route = field(init=False)

    def __post_init__(self) -> None:
        self.fetch = self.portone.get(f"/payments/{self.payment_id}").mock(side_effect=self._get)
        self.cancel = self.portone.post(f"/payments/{self.payment_id}/cancel").mock(
            side_effect=self._cancel
        )

    @property
    def status(self) -> str:
        if self.cancelled == 0:
            return "PAID"
        return "CANCELLED" if self.cancelled == self.total else "PARTIAL_CANCELLED"

    @property
    def sent(self) -> list[dict[str, Any]]:
        """The bodies of every cancel PortOne received, in order."""
        return [json.loads(call.request.content) for call in self.cancel.calls]

    def cancel_in_console(self, amount: int) -> None:
        self.cancelled += amount
        self.changed_at += timedelta(minutes=1)

    def _get(self, request: httpx.Request) -> httpx.Response:
        body = payment_body(
            self.payment_id,
            status=self.status,
            total=self.total,
            cancelled=self.cancelled,
            virtual_account=self.virtual_account,
            status_changed_at=self.changed_at,
        )
        return httpx.Response(200, json=body)

    def _cancel(self, request: httpx.Request) -> httpx.Response:
        if self.unavailable_once:
            self.unavailable_once = False
            return httpx.Response(503)
        body = json.loads(request.content)
        left = self.total - self.cancelled
        if left == 0:
            return portone_error(409, "PAYMENT_ALREADY_CANCELLED")
        if body.get("currentCancellableAmount", left) != left:
            return portone_error(409, "CANCELLABLE_AMOUNT_CONSISTENCY_BROKEN")
        amount = body.get("amount", left)
        if amount > left:
            return portone_error(409, "CANCEL_AMOUNT_EXCEEDS_CANCELLABLE_AMOUNT")
        if self.cancellation_status == "SUCCEEDED":
            self.cancel_in_console(amount)
        if self.answer_lost_once:
            self.answer_lost_once = False
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return httpx.Response(200, json={"cancellation": cancellation_body(amount, self)})


def cancellation_body(amount: int, payment: PortOnePayment) -> dict[str, Any]:
    at = payment.changed_at.isoformat().replace("+00:00", "Z")
    cancellation: dict[str, Any] = {
        "status": payment.cancellation_status,
        "id": f"cancel-{len(payment.cancel.calls)}",
        "totalAmount": amount,
        "taxFreeAmount": 0,
        "vatAmount": 0,
        "reason": "refund",
        "requestedAt": at,
    }
    if payment.cancellation_status == "SUCCEEDED":
        cancellation["cancelledAt"] = at
    return cancellation


def portone_error(status: int, type_: str) -> httpx.Response:
    return httpx.Response(status, json={"type": type_, "message": f"{type_} (mocked)"})


async def paid_order(
    client: httpx.AsyncClient, portone: respx.MockRouter, *, virtual_account: bool = False
) -> tuple[dict[str, Any], PortOnePayment]:
    order = await create_order(client, amount=10_000)
    payment = PortOnePayment(portone, order["paymentId"], virtual_account=virtual_account)
    response = await client.post("/payments/complete", json={"paymentId": order["paymentId"]})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "PAID"
    return order, payment


async def refund(
    client: httpx.AsyncClient, order_id: str, key: str | None = None, **body: Any
) -> httpx.Response:
    headers = INTERNAL | ({"Idempotency-Key": key} if key else {})
    return await client.post(
        f"/orders/{order_id}/refund", json={"reason": "customer asked", **body}, headers=headers
    )


async def refund_rows(db: asyncpg.Connection, order_id: str) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM refunds WHERE order_id = $1 ORDER BY created_at", order_id)
