"""Postgres goes away under load and comes back: 503s meanwhile, nothing half-applied.

A TCP proxy sits between the service and Postgres. Concurrent completions and webhooks
run while the proxy goes down (every connection cut, new ones refused, as when Postgres
stops) or answers new connections the way a stopping Postgres does (FATAL 57P03), and
then comes back. Every answer is 200 or a prompt 503 DATABASE_UNAVAILABLE; every order
is either untouched or paid with exactly one transition and one order event; the service
recovers without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
import respx
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from app.main import create_app
from app.wiring import Services
from tests.helpers import INTERNAL, make_settings, mocked_portone, signed_webhook
from tests.portone_payloads import payment_body
from tests.postgres_proxy import PostgresProxy, postgres_error

pytestmark = pytest.mark.slow

EVENTS_URL = "http://events.test/order-events"
EVENTS_SECRET = "whsec_ZXZlbnRzLXNlY3JldC1mb3ItZGItZmF1bHRz"
ORDERS = 40
AMOUNT = 10_000
LOAD_SECONDS = 4.0
OUTAGE = (0.8, 2.6)  # seconds into the load: down, then back
PROMPT = 6.0  # no answer may take longer (the pool and connect timeouts are 5 s)


@dataclass
class Answer:
    kind: str
    started: float
    finished: float
    status: int
    code: str | None
    retry_after: str | None

    @property
    def seconds(self) -> float:
        return self.finished - self.started


@pytest.fixture
def portone() -> Iterator[respx.MockRouter]:
    """PortOne: every payment PAID for the order's amount; order events accepted."""
    with mocked_portone() as router, respx.mock(assert_all_called=False) as shop:
        router.get(path__regex=r"^/payments/(?P<payment_id>[^/]+)$").mock(
            side_effect=lambda request, payment_id: httpx.Response(
                200, json=payment_body(payment_id, total=AMOUNT)
            )
        )
        router.get("/payments").respond(
            200, json={"items": [], "page": {"number": 0, "size": 100, "totalCount": 0}}
        )
        shop.post(EVENTS_URL).respond(204)  # the order events' own client
        yield router


@pytest.fixture
async def proxied_app(
    database_url: str, db: asyncpg.Connection, proxy: PostgresProxy, portone: respx.MockRouter
) -> AsyncIterator[FastAPI]:
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    settings = make_settings(
        url.render_as_string(hide_password=False),
        order_events_url=EVENTS_URL,
        order_events_secret=SecretStr(EVENTS_SECRET),
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(proxied_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=proxied_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
        yield client


async def _answer(kind: str, request: Any) -> Answer:
    started = time.monotonic()
    response: httpx.Response = await request
    code = None
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        code = response.json().get("code")
    return Answer(
        kind,
        started,
        time.monotonic(),
        response.status_code,
        code,
        response.headers.get("retry-after"),
    )


async def _load(
    client: httpx.AsyncClient, proxy: PostgresProxy, payment_ids: list[str], mode: str
) -> tuple[list[Answer], tuple[float, float]]:
    """Completions and webhooks for LOAD_SECONDS, with the database away in the middle."""
    rng = random.Random(9)
    answers: list[asyncio.Task[Answer]] = []
    began = time.monotonic()
    window = [0.0, 0.0]
    served = asyncio.Event()  # an answer came back 200: the outage cuts into a working service

    def note(task: asyncio.Task[Answer]) -> None:
        if not task.cancelled() and task.exception() is None and task.result().status == 200:
            served.set()

    async def outage() -> None:
        await asyncio.sleep(OUTAGE[0])
        await served.wait()  # on a busy machine the first answers can take a while
        window[0] = time.monotonic()
        await proxy.set_mode(mode)
        await asyncio.sleep(OUTAGE[1] - OUTAGE[0])
        await proxy.set_mode("up")
        window[1] = time.monotonic()

    flipping = asyncio.create_task(outage())
    while time.monotonic() - began < LOAD_SECONDS:
        for payment_id in rng.sample(payment_ids, 3):
            if rng.random() < 0.7:
                request = client.post("/payments/complete", json={"paymentId": payment_id})
                answers.append(asyncio.create_task(_answer("complete", request)))
            else:
                body, headers = signed_webhook(payment_id)
                request = client.post("/webhooks/portone", content=body, headers=headers)
                answers.append(asyncio.create_task(_answer("webhook", request)))
            answers[-1].add_done_callback(note)
        await asyncio.sleep(0.03)
    await flipping
    return list(await asyncio.gather(*answers)), (window[0], window[1])


async def _consistency(db: asyncpg.Connection) -> dict[str, str]:
    """Each order untouched, or PAID with one PENDING→PAID transition and one order event."""
    orders = {r["id"]: r["status"] for r in await db.fetch("SELECT id, status FROM orders")}
    transitions: dict[str, list[tuple[str, str]]] = {order_id: [] for order_id in orders}
    for event in await db.fetch("SELECT * FROM order_history ORDER BY id"):
        if event["from_status"] != event["to_status"]:
            transitions[event["order_id"]].append((event["from_status"], event["to_status"]))
    outbox: dict[str, list[str]] = {order_id: [] for order_id in orders}
    for row in await db.fetch("SELECT order_id, type FROM outbox_events ORDER BY seq"):
        outbox[row["order_id"]].append(row["type"])
    for order_id, status in orders.items():
        if status == "PENDING":
            assert transitions[order_id] == [], order_id
            assert outbox[order_id] == [], order_id
        else:
            assert status == "PAID", order_id
            assert transitions[order_id] == [("PENDING", "PAID")], order_id
            assert outbox[order_id] == ["order.paid"], order_id
    processed = await db.fetch(
        "SELECT d.status, o.status AS order_status FROM webhook_deliveries d"
        " JOIN orders o ON o.payment_id = d.payment_id WHERE d.status = 'PROCESSED'"
    )
    assert all(row["order_status"] == "PAID" for row in processed)
    return orders


async def _until_ready(client: httpx.AsyncClient) -> None:
    for _ in range(10):  # the pool drops the connections the outage killed as it meets them
        if (await client.get("/readyz")).status_code == 200:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the service did not become ready again without a restart")


# "shutting_down" and "restarting" guard the fix for errors while connecting (FATAL 57P03
# or 53300, or a socket closed during startup), once answered 500 instead of 503.
@pytest.mark.parametrize("mode", ["down", "shutting_down", "restarting"])
async def test_database_outage_under_load(
    client: httpx.AsyncClient,
    proxied_app: FastAPI,
    proxy: PostgresProxy,
    db: asyncpg.Connection,
    mode: str,
) -> None:
    created = [
        (
            await client.post(
                "/orders", json={"orderName": f"DB fault {i}", "amount": AMOUNT}, headers=INTERNAL
            )
        ).json()
        for i in range(ORDERS)
    ]
    payment_ids = [order["paymentId"] for order in created]

    answers, (down_at, up_at) = await _load(client, proxy, payment_ids, mode)

    # Every answer: 200, or a prompt, retryable 503 DATABASE_UNAVAILABLE. Never a 500.
    unexpected = [a for a in answers if a.status not in (200, 503)]
    assert unexpected == []
    for answer in answers:
        if answer.status == 503:
            assert answer.code == "DATABASE_UNAVAILABLE", answer
            assert answer.retry_after is not None
    assert max(a.seconds for a in answers) < PROMPT
    during = [a for a in answers if a.started > down_at + 0.05 and a.finished < up_at]
    assert during, "no request ran while the database was away"
    assert {a.status for a in during} == {503}, [a for a in during if a.status != 503]
    assert any(a.status == 200 and a.finished < down_at for a in answers)

    # Nothing half-applied: the outage cut transactions mid-way.
    await _consistency(db)

    # Deliveries whose bookkeeping the outage interrupted are left to the reconciler once
    # their lease runs out; let it run out now, and one pass settles them.
    await db.execute(
        "UPDATE webhook_deliveries SET lease_until = now() - interval '1 second'"
        " WHERE status = 'PROCESSING'"
    )
    await _until_ready(client)
    summary = await proxied_app.state.services.reconciler().run_pass()
    assert summary.failed == 0
    stuck = await db.fetch(
        "SELECT webhook_id, status FROM webhook_deliveries"
        " WHERE status NOT IN ('PROCESSED', 'IGNORED')"
    )
    assert stuck == []

    # Recovered without a restart: the browsers' retries complete every order.
    for payment_id in payment_ids:
        again = await client.post("/payments/complete", json={"paymentId": payment_id})
        assert again.status_code == 200, again.text
        assert again.json()["status"] == "PAID"
    orders = await _consistency(db)
    assert set(orders.values()) == {"PAID"}


async def test_sessions_postgres_ended_in_the_pool_are_503s_until_fresh_ones_serve(
    client: httpx.AsyncClient, proxied_app: FastAPI
) -> None:
    """Postgres restarting says goodbye to each session before it closes the socket; a
    request that borrows an idle connection in between is a retryable 503, never a 500."""
    assert (await client.get("/orders", headers=INTERNAL)).status_code == 200
    services: Services = proxied_app.state.services
    idle = services.database.pool.get_idle_size()
    assert idle > 0
    protocols = []
    async with contextlib.AsyncExitStack() as borrowed:
        for _ in range(idle):
            connection = await borrowed.enter_async_context(services.database.connect())
            protocols.append(connection._protocol)  # type: ignore[attr-defined]
    goodbye = postgres_error("57P01", "terminating connection due to administrator command")
    for protocol in protocols:  # read while the connections wait in the pool
        protocol.data_received(goodbye)

    answers = []
    for _ in range(idle + 1):
        answers.append(await client.get("/orders", headers=INTERNAL))
        if answers[-1].status_code == 200:
            break
    assert answers[0].status_code == 503
    assert {a.json()["code"] for a in answers[:-1]} == {"DATABASE_UNAVAILABLE"}
    assert answers[-1].status_code == 200
