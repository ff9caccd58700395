"""The shop's side of order events for the tests: a real local receiver, and the steps
that move an order and read its outbox."""

from __future__ import annotations

import asyncio
import base64
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import httpx
import respx
from fastapi import FastAPI
from pydantic import SecretStr
from standardwebhooks import Webhook

from app.config import Settings
from app.main import create_app
from app.outbox.delivery import EventDelivery
from app.wiring import Services
from tests.helpers import (
    INTERNAL,
    TOKEN,
    WEBHOOK_SECRET,
    make_settings,
    portone_returns,
    post_webhook,
)
from tests.portone_payloads import STORE_ID

EVENTS_SECRET = "whsec_" + base64.b64encode(b"order-events-secret-for-the-tests").decode()
HANG = -1  # a planned answer: keep the request open for HANG_SECONDS, then answer 200
HANG_SECONDS = 3.0
LOOP_DEADLINE = 5.0  # the in-app loop runs every second
T0 = datetime.now(UTC) - timedelta(hours=1)


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    answer: int

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def ok(self) -> bool:
        return 200 <= self.answer < 300

    def verified(self) -> dict[str, Any]:
        """The body, after the consumer-side Standard Webhooks check (raises if forged)."""
        payload: dict[str, Any] = Webhook(EVENTS_SECRET).verify(self.body, self.headers)
        return payload


class Receiver:
    """The shop's endpoint on 127.0.0.1, in a thread: answers as planned, then 200."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plan: deque[int] = deque()
        self._received: list[Received] = []
        self.delay = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                answer = receiver._record(headers, body)
                if answer == HANG:
                    time.sleep(HANG_SECONDS)
                    answer = 200
                elif receiver.delay:
                    time.sleep(receiver.delay)
                with suppress(OSError):  # a client that gave up has closed the connection
                    self.send_response(answer)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/events"

    def _record(self, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            answer = self._plan.popleft() if self._plan else 200
            self._received.append(Received(headers, body, answer))
            return answer

    def answer(self, *answers: int) -> None:
        """The next requests get these answers (HTTP statuses, or HANG)."""
        with self._lock:
            self._plan.extend(answers)

    @property
    def received(self) -> list[Received]:
        """Every request, in arrival order."""
        with self._lock:
            return list(self._received)

    @property
    def accepted(self) -> list[Received]:
        """The requests answered 2xx: what the shop processed."""
        return [request for request in self.received if request.ok]

    async def wait_for(self, count: int, within: float) -> list[Received]:
        """The accepted requests once there are `count`, or after `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            accepted = self.accepted
            if len(accepted) >= count or time.monotonic() > deadline:
                return accepted
            await asyncio.sleep(0.05)

    def __enter__(self) -> Receiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def events_settings(database_url: str, url: str, **overrides: Any) -> Settings:
    return make_settings(
        database_url,
        order_events_url=url,
        order_events_secret=SecretStr(EVENTS_SECRET),
        reconcile_interval_seconds=0,
        **overrides,
    )


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with its lifespan (and so its delivery loop, when configured) running."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@asynccontextmanager
async def client_of(application: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
        yield client


def delivery_of(services: Services, http: httpx.AsyncClient) -> EventDelivery:
    delivery = services.event_delivery(http)
    assert delivery is not None
    return delivery


async def pay(
    client: httpx.AsyncClient, portone: respx.MockRouter, order: dict[str, Any], minute: int = 0
) -> dict[str, Any]:
    """The browser completes the payment; PortOne says PAID. The order as it now stands."""
    portone_returns(portone, order["paymentId"], status_changed_at=T0 + timedelta(minutes=minute))
    response = await client.post("/payments/complete", json={"paymentId": order["paymentId"]})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "PAID"
    return await current(client, order)


async def cancel_at_portone(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    order: dict[str, Any],
    *,
    cancelled: int,
    minute: int,
) -> dict[str, Any]:
    """A cancellation in PortOne's console, learned by webhook. The order as it now stands."""
    partial = cancelled < order["amount"]
    portone_returns(
        portone,
        order["paymentId"],
        status="PARTIAL_CANCELLED" if partial else "CANCELLED",
        cancelled=cancelled,
        status_changed_at=T0 + timedelta(minutes=minute),
    )
    kind = "Transaction.PartialCancelled" if partial else "Transaction.Cancelled"
    response = await post_webhook(client, order["paymentId"], kind=kind)
    assert response.status_code == 200, response.text
    assert response.json() == {"outcome": "processed"}
    return await current(client, order)


async def current(client: httpx.AsyncClient, order: dict[str, Any]) -> dict[str, Any]:
    response = await client.get(f"/orders/{order['orderId']}", headers=INTERNAL)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def outbox(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM outbox_events ORDER BY seq")


async def make_due(db: asyncpg.Connection) -> None:
    """Time passes: every retry scheduled for later is due now."""
    await db.execute(
        "UPDATE outbox_events SET next_attempt_at = now() WHERE next_attempt_at > now()"
    )


async def listed(client: httpx.AsyncClient, status: str) -> list[dict[str, Any]]:
    response = await client.get("/order-events", params={"status": status}, headers=INTERNAL)
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def assert_retry_scheduled(row: asyncpg.Record, error: str) -> None:
    """One failed attempt: the error kept, the next one 5 s (±20 %) later."""
    assert row["state"] == "failed"
    assert row["attempts"] == 1
    assert row["delivered_at"] is None
    assert error in row["last_error"]
    wait = row["next_attempt_at"] - datetime.now(UTC)
    assert timedelta(seconds=2) < wait <= timedelta(seconds=6.5), wait


def service_env(database_url: str, receiver: Receiver) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "PORTONE_MODE": "live",
        "DATABASE_URL": database_url,
        "PORTONE_API_BASE_URL": "http://127.0.0.1:9",  # never called: no reconciler
        "PORTONE_API_SECRET": "portone-test-secret",
        "PORTONE_STORE_ID": STORE_ID,
        "PORTONE_WEBHOOK_SECRETS": WEBHOOK_SECRET,
        "INTERNAL_API_TOKEN": TOKEN,
        "RECONCILE_INTERVAL_SECONDS": "0",
        "ORDER_EVENTS_URL": receiver.url,
        "ORDER_EVENTS_SECRET": EVENTS_SECRET,
        "LOG_LEVEL": "WARNING",
    }
