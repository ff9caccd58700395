"""Small steps the tests share."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import respx
from fastapi import FastAPI
from pydantic import SecretStr

from app import standard_webhooks
from app.config import Settings
from app.sandbox.delivery import WebhookSender
from app.standard_webhooks import decode_secret
from tests.portone_payloads import STORE_ID, payment_body

PORTONE_HOST = "portone.test"
PORTONE = f"https://{PORTONE_HOST}"
TOKEN = "internal-test-token-of-32-characters"
WEBHOOK_SECRET = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0wMDAx"
INTERNAL = {"Authorization": f"Bearer {TOKEN}"}
PAYMENT_RESULT = frozenset(
    {
        "orderId",
        "paymentId",
        "orderName",
        "amount",
        "currency",
        "status",
        "paidAt",
        "refundedAmount",
        "virtualAccount",
    }
)
"""The fields of what the public doors answer: the Order's first ones, nothing private."""


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "portone_mode": "live",
        "database_url": database_url,
        "portone_api_base_url": PORTONE,
        "portone_api_secret": SecretStr("portone-test-secret"),
        "portone_store_id": STORE_ID,
        "portone_channel_key": "channel-key-test",
        "portone_webhook_secrets": [SecretStr(WEBHOOK_SECRET)],
        "internal_api_token": SecretStr(TOKEN),
        "reconcile_interval_seconds": 0,
    }
    return Settings(**(values | overrides))


def make_sandbox_settings(database_url: str, **overrides: Any) -> Settings:
    """The service in sandbox mode: PortOne is its own in-process emulator."""
    return make_settings(
        database_url, portone_mode="sandbox", portone_api_base_url=None, **overrides
    )


@contextmanager
def mocked_portone() -> Iterator[respx.MockRouter]:
    """PortOne, mocked on the production client itself: respx takes over the transport of
    every httpx client (aiohttp's included). Requests to other hosts (the tests' own
    clients) go through; a request to PortOne that no test routed fails the test."""
    with respx.mock(using="httpx", assert_all_called=False) as elsewhere:
        elsewhere.route(host__regex=rf"^(?!{re.escape(PORTONE_HOST)}$)").pass_through()
        with respx.mock(base_url=PORTONE, assert_all_called=False, using="httpx") as router:
            yield router


async def complete(client: httpx.AsyncClient, payment_id: str) -> httpx.Response:
    """The browser's call once PortOne's window closes."""
    return await client.post("/payments/complete", json={"paymentId": payment_id})


async def create_order(
    client: httpx.AsyncClient, amount: int = 10_000, **body: Any
) -> dict[str, Any]:
    response = await client.post(
        "/orders",
        json={"orderName": "Waffle trainer 2", "amount": amount, **body},
        headers=INTERNAL,
    )
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


def portone_returns(portone: respx.MockRouter, payment_id: str, **payment: Any) -> respx.Route:
    """Route GET /payments/{id} to a payment body."""
    return portone.get(f"/payments/{payment_id}").respond(
        200, json=payment_body(payment_id, **payment)
    )


def account_issued(portone: respx.MockRouter, payment_id: str, **payment: Any) -> respx.Route:
    """Route GET /payments/{id} to a virtual account issued for the payment."""
    return portone_returns(
        portone, payment_id, status="VIRTUAL_ACCOUNT_ISSUED", virtual_account=True, **payment
    )


async def awaiting_deposit(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    order: dict[str, Any],
    *,
    issued_at: datetime,
) -> respx.Route:
    """The order's virtual account issued by PortOne at `issued_at`, and the customer back
    from the payment window: the order awaits the deposit. Returns the route of the
    payment's reads, for the test to answer otherwise next."""
    route = account_issued(portone, order["paymentId"], status_changed_at=issued_at)
    response = await complete(client, order["paymentId"])
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "AWAITING_DEPOSIT"
    assert response.json()["virtualAccount"]["accountNumber"] == "56211234567890"
    return route


async def order_row(db: asyncpg.Connection, order_id: str) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM orders WHERE id = $1", order_id)
    assert row is not None
    return row


async def events(db: asyncpg.Connection, order_id: str) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM order_history WHERE order_id = $1 ORDER BY id", order_id)


async def transitions(db: asyncpg.Connection, order_id: str) -> list[tuple[str, str]]:
    return [
        (e["from_status"], e["to_status"])
        for e in await events(db, order_id)
        if e["from_status"] != e["to_status"]
    ]


def signed_webhook(
    payment_id: str,
    *,
    kind: str = "Transaction.Paid",
    webhook_id: str | None = None,
    store_id: str = STORE_ID,
    secret: str = WEBHOOK_SECRET,
    at: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A 2024-04-25 webhook body and the Standard Webhooks headers that sign it."""
    body = json.dumps(
        {
            "type": kind,
            "timestamp": "2026-11-27T00:00:00Z",
            "data": {"storeId": store_id, "paymentId": payment_id, "transactionId": "tx-1"},
        }
    ).encode()
    webhook_id = webhook_id or f"msg_{secrets.token_hex(8)}"
    return body, standard_webhooks.headers(decode_secret(secret), webhook_id, body, at=at)


def sign_literal(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> str:
    """A v1 signature over the timestamp exactly as written (`sign` only takes an int)."""
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(digest.digest()).decode()


async def post_webhook(client: httpx.AsyncClient, payment_id: str, **kwargs: Any) -> httpx.Response:
    body, headers = signed_webhook(payment_id, **kwargs)
    return await client.post("/webhooks/portone", content=body, headers=headers)


def portone_lists(portone: respx.MockRouter, *payments: dict[str, Any]) -> respx.Route:
    """Route GET /payments (the changed-payments list) to one page holding `payments`."""
    page = {
        "items": list(payments),
        "page": {"number": 0, "size": 100, "totalCount": len(payments)},
    }
    return portone.get("/payments").respond(200, json=page)


async def age_order(db: asyncpg.Connection, order_id: str, minutes: int) -> None:
    await db.execute(
        "UPDATE orders SET created_at = now() - make_interval(mins => $2) WHERE id = $1",
        order_id,
        minutes,
    )


def portone_cancels(
    portone: respx.MockRouter, payment_id: str, *, amount: int = 10_000, status: str = "SUCCEEDED"
) -> respx.Route:
    """Route POST /payments/{id}/cancel to a cancellation of `amount`."""
    cancellation = {
        "status": status,
        "id": f"cancel-{payment_id}",
        "totalAmount": amount,
        "taxFreeAmount": 0,
        "vatAmount": 0,
        "reason": "test",
        "requestedAt": "2026-11-27T00:00:00Z",
        "cancelledAt": "2026-11-27T00:00:00Z",
    }
    return portone.post(f"/payments/{payment_id}/cancel").respond(
        200, json={"cancellation": cancellation}
    )


async def after_backoff(db: asyncpg.Connection, order_id: str) -> None:
    """The time an owed compensation waits before its next attempt, gone by."""
    await db.execute(
        "UPDATE orders SET compensation_next_attempt_at = now() - interval '1 second'"
        " WHERE id = $1",
        order_id,
    )


def webhook_sender(app: FastAPI) -> WebhookSender:
    """The sandbox's sender of PortOne's webhooks, in an app running in sandbox mode."""
    sender = app.state.sandbox.sender
    assert isinstance(sender, WebhookSender)
    return sender
