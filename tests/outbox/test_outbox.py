"""Order events: written with the change (a transactional outbox), delivered to a real
local receiver signed the Standard Webhooks way, once per change, in order, retried."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import respx
from fastapi import FastAPI
from pydantic import SecretStr
from standardwebhooks import Webhook

from app import main as app_main
from app.config import Settings
from app.main import create_app
from app.orders.order import Order
from app.outbox.delivery import EventDelivery
from app.outbox.writer import Outbox
from app.payments.sync import Source
from app.services import Services
from tests.conftest import TOKEN, WEBHOOK_SECRET, make_settings
from tests.database import ROOT
from tests.helpers import (
    INTERNAL,
    create_order,
    order_row,
    portone_returns,
    post_webhook,
    transitions,
)
from tests.live_server import service_process
from tests.portone_payloads import STORE_ID
from tests.problem_details import assert_problem

EVENTS_SECRET = "whsec_" + base64.b64encode(b"order-events-secret-for-the-tests").decode()
HANG = -1  # a planned answer: keep the request open for HANG_SECONDS, then answer 200
HANG_SECONDS = 3.0
LOOP_DEADLINE = 5.0  # the in-app loop runs every second
T0 = datetime.now(UTC) - timedelta(hours=1)


# --- the shop's endpoint ------------------------------------------------------------------


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


# --- fixtures and steps -------------------------------------------------------------------


def events_settings(database_url: str, url: str, **overrides: Any) -> Settings:
    return make_settings(
        database_url,
        order_events_url=url,
        order_events_secret=SecretStr(EVENTS_SECRET),
        reconcile_interval_seconds=0,
        **overrides,
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture(autouse=True)
def _local_http_is_real(portone: respx.MockRouter) -> None:
    """respx mocks every httpx request: let the ones to 127.0.0.1 (receiver, services) out."""
    portone.route(host="127.0.0.1").pass_through()


@pytest.fixture
def settings(database_url: str, receiver: Receiver) -> Settings:
    return events_settings(database_url, receiver.url)


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


@pytest.fixture
async def app(
    settings: Settings, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FastAPI]:
    """The app with its delivery loop idle: these tests run the delivery passes themselves."""
    monkeypatch.setattr(app_main, "EVENT_DELIVERY_INTERVAL", 3600.0)
    async with running(settings) as application:
        yield application


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
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


# --- one verified event per change, in order -------------------------------------------


async def test_each_status_change_reaches_the_shop_once_signed_and_in_order(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    services: Services,
    http: httpx.AsyncClient,
    receiver: Receiver,
    db: asyncpg.Connection,
) -> None:
    order = await create_order(client, amount=10_000)
    paid = await pay(client, portone, order, minute=1)
    again = await client.post("/payments/complete", json={"paymentId": order["paymentId"]})
    assert again.status_code == 200  # no change: no event
    partly = await cancel_at_portone(client, portone, order, cancelled=3_000, minute=2)
    refunded = await cancel_at_portone(client, portone, order, cancelled=10_000, minute=3)
    assert len(await outbox(db)) == 3
    assert receiver.received == []  # nothing is sent before a delivery pass

    summary = await delivery_of(services, http).deliver_due()

    assert (summary.delivered, summary.failed, summary.skipped) == (3, 0, False)
    rows = await outbox(db)
    received = receiver.received
    assert [r.webhook_id for r in received] == [row["id"] for row in rows]
    assert len({r.webhook_id for r in received}) == 3
    bodies = [r.verified() for r in received]
    assert [b["type"] for b in bodies] == [
        "order.paid",
        "order.partially_refunded",
        "order.refunded",
    ]
    assert [b["data"] for b in bodies] == [paid, partly, refunded]
    assert [b["data"]["refundedAmount"] for b in bodies] == [0, 3_000, 10_000]
    for request, row in zip(received, rows, strict=True):
        assert request.headers["content-type"].startswith("application/json")
        assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
        assert json.loads(request.body) == json.loads(row["payload"])
        at = datetime.fromisoformat(json.loads(request.body)["timestamp"])
        assert abs(at - row["created_at"]) < timedelta(seconds=5)
        assert row["state"] == "delivered"
        assert row["attempts"] == 1
        assert row["delivered_at"] is not None
        assert row["last_error"] is None
    delivered = await listed(client, "delivered")
    assert [e["eventId"] for e in delivered] == [r.webhook_id for r in received]
    assert [e["orderId"] for e in delivered] == [order["orderId"]] * 3
    assert await listed(client, "failed") == []
    assert await listed(client, "pending") == []

    # Nothing is sent twice.
    assert (await delivery_of(services, http).deliver_due()).delivered == 0
    assert len(receiver.received) == 3


async def test_the_delivery_loop_of_the_running_app_delivers_within_seconds(
    settings: Settings, db: asyncpg.Connection, portone: respx.MockRouter, receiver: Receiver
) -> None:
    async with running(settings) as application, client_of(application) as client:
        order = await create_order(client)
        paid = await pay(client, portone, order, minute=1)

        first = await receiver.wait_for(1, LOOP_DEADLINE)

        assert [r.verified() for r in first] == [
            {"type": "order.paid", "timestamp": first[0].verified()["timestamp"], "data": paid}
        ]
        partly = await cancel_at_portone(client, portone, order, cancelled=2_500, minute=2)

        both = await receiver.wait_for(2, LOOP_DEADLINE)

        assert [r.verified()["data"] for r in both] == [paid, partly]
        assert [r.webhook_id for r in both] == [row["id"] for row in await outbox(db)]
    assert len(receiver.received) == 2


# --- retries ------------------------------------------------------------------------------


async def test_receiver_failing_then_recovering_gets_the_event_later_with_the_same_id(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    services: Services,
    http: httpx.AsyncClient,
    receiver: Receiver,
    db: asyncpg.Connection,
) -> None:
    order = await create_order(client)
    paid = await pay(client, portone, order, minute=1)
    receiver.answer(500)

    summary = await delivery_of(services, http).deliver_due()

    assert (summary.delivered, summary.failed) == (0, 1)
    [row] = await outbox(db)
    assert_retry_scheduled(row, "HTTP 500")
    [failed] = await listed(client, "failed")
    assert failed["eventId"] == row["id"]
    assert failed["attempts"] == 1
    assert "500" in failed["lastError"]

    # Not due yet: a pass right away sends nothing. A later change of the same order
    # waits behind the undelivered one.
    refunded = await cancel_at_portone(client, portone, order, cancelled=10_000, minute=2)
    assert (await delivery_of(services, http).deliver_due()).delivered == 0
    assert len(receiver.received) == 1

    await make_due(db)
    summary = await delivery_of(services, http).deliver_due()

    assert (summary.delivered, summary.failed) == (2, 0)
    first, second, third = receiver.received
    assert not first.ok
    assert second.webhook_id == first.webhook_id == row["id"]
    assert second.verified() == first.verified()
    assert second.verified()["data"] == paid
    assert third.verified()["type"] == "order.refunded"
    assert third.verified()["data"] == refunded
    rows = await outbox(db)
    assert [(r["state"], r["attempts"], r["last_error"]) for r in rows] == [
        ("delivered", 2, None),
        ("delivered", 1, None),
    ]
    assert await listed(client, "failed") == []


async def test_hanging_receiver_times_out_is_recorded_failed_and_is_retried(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    services: Services,
    receiver: Receiver,
    db: asyncpg.Connection,
) -> None:
    order = await create_order(client)
    paid = await pay(client, portone, order, minute=1)
    receiver.answer(HANG)

    async with httpx.AsyncClient(timeout=0.5) as impatient:
        started = time.monotonic()
        summary = await delivery_of(services, impatient).deliver_due()
        took = time.monotonic() - started

        assert (summary.delivered, summary.failed) == (0, 1)
        assert took < HANG_SECONDS  # gave up on its own timeout, not the receiver's answer
        [row] = await outbox(db)
        assert_retry_scheduled(row, "Timeout")
        assert [e["eventId"] for e in await listed(client, "failed")] == [row["id"]]

        await make_due(db)
        summary = await delivery_of(services, impatient).deliver_due()

    assert (summary.delivered, summary.failed) == (1, 0)
    hung, retried = receiver.received
    assert hung.answer == HANG
    assert retried.ok
    assert retried.webhook_id == hung.webhook_id == row["id"]
    assert retried.verified()["data"] == paid
    [row] = await outbox(db)
    assert (row["state"], row["attempts"]) == ("delivered", 2)


# --- the internal endpoints ----------------------------------------------------------------


async def test_failed_event_is_listed_and_redelivered_on_request(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    services: Services,
    http: httpx.AsyncClient,
    receiver: Receiver,
    db: asyncpg.Connection,
) -> None:
    order = await create_order(client)
    paid = await pay(client, portone, order, minute=1)
    receiver.answer(503)
    await delivery_of(services, http).deliver_due()
    [row] = await outbox(db)

    [failed] = await listed(client, "failed")

    assert failed["eventId"] == row["id"]
    assert failed["orderId"] == order["orderId"]
    assert failed["type"] == "order.paid"
    assert failed["state"] == "failed"
    assert failed["attempts"] == 1
    assert failed["lastError"].startswith("HTTP 503")
    assert failed["payload"]["data"] == paid
    assert failed["deliveredAt"] is None
    assert await listed(client, "pending") == []

    response = await client.post(f"/order-events/{row['id']}/redeliver", headers=INTERNAL)

    assert response.status_code == 202, response.text
    assert response.json()["eventId"] == row["id"]
    assert response.json()["state"] == "pending"
    assert [e["eventId"] for e in await listed(client, "pending")] == [row["id"]]
    assert await listed(client, "failed") == []

    assert (await delivery_of(services, http).deliver_due()).delivered == 1

    failing, redelivered = receiver.received
    assert redelivered.ok
    assert redelivered.webhook_id == failing.webhook_id == row["id"]
    assert redelivered.verified()["data"] == paid
    [delivered] = await listed(client, "delivered")
    assert delivered["eventId"] == row["id"]
    assert delivered["deliveredAt"] is not None
    assert delivered["lastError"] is None

    # A delivered event can be replayed too, with its id, for a consumer that lost it.
    response = await client.post(f"/order-events/{row['id']}/redeliver", headers=INTERNAL)
    assert response.status_code == 202
    assert (await delivery_of(services, http).deliver_due()).delivered == 1
    assert [r.webhook_id for r in receiver.accepted] == [row["id"], row["id"]]


async def test_redelivering_an_unknown_event_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.post("/order-events/evt_nope/redeliver", headers=INTERNAL)

    assert_problem(response, 404, "EVENT_NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/order-events?status=failed"), ("POST", "/order-events/evt_nope/redeliver")],
)
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong-token"}], ids=["none", "wrong"]
)
async def test_order_event_endpoints_need_the_internal_token(
    client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]
) -> None:
    response = await client.request(method, path, headers=headers)

    assert_problem(response, 401, "UNAUTHORIZED")


# --- transactions and crashes --------------------------------------------------------------


# Both ways a change is written: under the lock, and in one statement on the row as read.
@pytest.mark.parametrize("read_first", [False, True], ids=["locked", "as-read"])
async def test_a_rolled_back_change_writes_no_event(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    services: Services,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    read_first: bool,
) -> None:
    order = await create_order(client)
    portone_returns(portone, order["paymentId"], status_changed_at=T0)
    seen = await services.sync.find(order["paymentId"]) if read_first else None
    add = Outbox.add

    async def add_then_fail(
        self: Outbox, connection: Any, changed: Order, event_type: str | None = None
    ) -> None:
        await add(self, connection, changed, event_type)  # written in the transaction...
        raise RuntimeError("the database connection died before the commit")  # ...then lost

    monkeypatch.setattr(Outbox, "add", add_then_fail)

    with pytest.raises(RuntimeError, match="before the commit"):
        await services.sync.sync(order["paymentId"], Source.COMPLETE, seen)

    assert await outbox(db) == []
    row = await order_row(db, order["orderId"])
    assert row["status"] == "PENDING"
    assert row["paid_at"] is None
    assert await transitions(db, order["orderId"]) == []

    monkeypatch.undo()
    await pay(client, portone, order, minute=1)
    assert [r["type"] for r in await outbox(db)] == ["order.paid"]


async def test_a_change_committed_before_a_crash_is_delivered_after_restart(
    settings: Settings,
    db: asyncpg.Connection,
    portone: respx.MockRouter,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_main, "EVENT_DELIVERY_INTERVAL", 3600.0)
    async with running(settings) as first_run, client_of(first_run) as client:
        order = await create_order(client)
        paid = await pay(client, portone, order, minute=1)
    # The process is gone before its delivery loop ever ran.
    [row] = await outbox(db)
    assert (row["state"], row["attempts"]) == ("pending", 0)
    assert receiver.received == []

    monkeypatch.undo()
    async with running(settings):
        delivered = await receiver.wait_for(1, LOOP_DEADLINE)

    assert [r.webhook_id for r in delivered] == [row["id"]]
    assert delivered[0].verified()["data"] == paid
    assert (await outbox(db))[0]["state"] == "delivered"


async def test_a_worker_dying_after_the_post_sends_again_with_the_same_id(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    services: Services,
    http: httpx.AsyncClient,
    receiver: Receiver,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order = await create_order(client)
    await pay(client, portone, order, minute=1)

    async def die(*args: object) -> None:
        raise RuntimeError("killed between the POST and its bookkeeping")

    monkeypatch.setattr(EventDelivery, "_record", die)
    with pytest.raises(RuntimeError, match="killed"):
        await delivery_of(services, http).deliver_due()
    monkeypatch.undo()
    [row] = await outbox(db)
    assert (row["state"], row["attempts"]) == ("pending", 0)

    # The restarted worker: at least once, so the shop sees the id again and ignores it.
    assert (await delivery_of(services, http).deliver_due()).delivered == 1

    assert [r.webhook_id for r in receiver.accepted] == [row["id"], row["id"]]
    assert (await outbox(db))[0]["state"] == "delivered"


async def test_no_events_are_written_without_order_events_url(
    database_url: str,
    db: asyncpg.Connection,
    portone: respx.MockRouter,
    http: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    async with running(make_settings(database_url)) as application:
        services: Services = application.state.services
        async with client_of(application) as client:
            order = await create_order(client)
            await pay(client, portone, order, minute=1)
            await cancel_at_portone(client, portone, order, cancelled=10_000, minute=2)

        assert services.event_delivery(http) is None
    assert (await order_row(db, order["orderId"]))["status"] == "REFUNDED"
    assert await outbox(db) == []
    assert receiver.received == []


# --- other processes ----------------------------------------------------------------------


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


async def test_two_service_processes_deliver_each_event_once(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    receiver: Receiver,
    db: asyncpg.Connection,
    database_url: str,
    tmp_path: Path,
) -> None:
    orders = [await create_order(client) for _ in range(24)]
    for order in orders:
        await pay(client, portone, order, minute=1)
    # Held back until both processes run, then due at once.
    await db.execute("UPDATE outbox_events SET next_attempt_at = NULL")
    # A slow shop: each pass outlasts the one-second beat, so the processes' passes overlap.
    receiver.delay = 0.5
    env = service_env(database_url, receiver)

    async with AsyncExitStack() as stack:
        stack.enter_context(service_process(env, log=tmp_path / "one.log"))
        stack.enter_context(service_process(env, log=tmp_path / "two.log"))
        await db.execute("UPDATE outbox_events SET next_attempt_at = now()")
        # More changes while both run.
        for order in orders[:6]:
            await cancel_at_portone(client, portone, order, cancelled=10_000, minute=2)
        for order in orders[6:9]:
            await cancel_at_portone(client, portone, order, cancelled=1_000, minute=2)

        await receiver.wait_for(33, 60)
        await asyncio.sleep(2.5)  # two more beats of each, to catch a second delivery

    rows = await outbox(db)
    assert len(rows) == 33
    counts = Counter(r.webhook_id for r in receiver.received)
    assert counts == Counter({row["id"]: 1 for row in rows})
    assert all(r.ok for r in receiver.received)
    assert {row["state"] for row in await outbox(db)} == {"delivered"}
    by_order: dict[str, list[str]] = {}
    for request in receiver.received:
        body = request.verified()
        by_order.setdefault(body["data"]["orderId"], []).append(body["type"])
    assert by_order == {
        order["orderId"]: ["order.paid"]
        + (["order.refunded"] if i < 6 else ["order.partially_refunded"] if i < 9 else [])
        for i, order in enumerate(orders)
    }


async def test_deliver_events_command_delivers_what_is_due_once(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    receiver: Receiver,
    db: asyncpg.Connection,
    database_url: str,
) -> None:
    order = await create_order(client)
    paid = await pay(client, portone, order, minute=1)

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "app", "deliver-events"),
        env=service_env(database_url, receiver),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)

    assert process.returncode == 0, stderr.decode()
    assert json.loads(stdout) == {"delivered": 1, "failed": 0, "skipped": False}
    [request] = receiver.received
    assert request.verified()["data"] == paid
    assert request.webhook_id == (await outbox(db))[0]["id"]
