"""Order events across transactions, crashes and processes: none for a rolled-back change,
every committed one delivered after a restart, each once however many processes deliver."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import respx

from app import main as app_main
from app.config import Settings
from app.orders.order import Order
from app.outbox.delivery import EventDelivery
from app.outbox.writer import Outbox
from app.payments.sync import Source
from app.wiring import Services
from tests.database import ROOT
from tests.helpers import (
    create_order,
    make_settings,
    order_row,
    portone_returns,
    transitions,
)
from tests.live_server import service_process
from tests.outbox.delivery.shop import (
    LOOP_DEADLINE,
    T0,
    Receiver,
    cancel_at_portone,
    client_of,
    delivery_of,
    outbox,
    pay,
    running,
    service_env,
)

pytestmark = pytest.mark.slow


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
