"""Order events: written with the change (a transactional outbox), delivered to a real
local receiver signed the Standard Webhooks way, once per change, in order, retried."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import asyncpg
import httpx
import pytest
import respx

from app.config import Settings
from app.wiring import Services
from tests.helpers import (
    INTERNAL,
    create_order,
)
from tests.outbox.delivery.shop import (
    HANG,
    HANG_SECONDS,
    LOOP_DEADLINE,
    Receiver,
    assert_retry_scheduled,
    cancel_at_portone,
    client_of,
    delivery_of,
    listed,
    make_due,
    outbox,
    pay,
    running,
)
from tests.problem_details import assert_problem

# --- one verified event per change, in order -----------------------------------------


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


# --- retries -------------------------------------------------------------------------


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


# --- the internal endpoints ----------------------------------------------------------


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


async def test_after_the_retries_gave_up_a_bulk_redelivery_sends_each_orders_events_in_order(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    services: Services,
    http: httpx.AsyncClient,
    receiver: Receiver,
    db: asyncpg.Connection,
) -> None:
    first, second = await create_order(client), await create_order(client)
    await pay(client, portone, first, minute=1)
    await pay(client, portone, second, minute=2)
    receiver.answer(503, 503)
    await delivery_of(services, http).deliver_due()
    # A day of failures later the delivery gave up on both; the first order changed again.
    await db.execute("UPDATE outbox_events SET next_attempt_at = NULL")
    await db.execute(
        "INSERT INTO outbox_events (id, order_id, type, payload, state)"
        " SELECT 'evt_later', order_id, 'order.refunded', payload, 'pending'"
        " FROM outbox_events WHERE order_id = $1",
        first["orderId"],
    )
    assert (await delivery_of(services, http).deliver_due()).delivered == 0  # held back
    assert await held_orders(client) == 1

    one = await client.post(
        "/order-events/redeliver", json={"orderId": first["orderId"]}, headers=INTERNAL
    )
    for _ in range(2):
        await delivery_of(services, http).deliver_due()

    assert (one.status_code, one.json()) == (202, {"redelivered": 1})
    paid_first = await db.fetchval(
        "SELECT id FROM outbox_events WHERE order_id = $1 AND type = 'order.paid'",
        first["orderId"],
    )
    sent = [r.webhook_id for r in receiver.received if r.ok]
    assert sent == [paid_first, "evt_later"]  # the first order's, in order
    assert await held_orders(client) == 0
    assert [e["orderId"] for e in await listed(client, "failed")] == [second["orderId"]]

    every = await client.post("/order-events/redeliver", headers=INTERNAL)
    await delivery_of(services, http).deliver_due()

    assert every.json() == {"redelivered": 1}
    assert await listed(client, "failed") == []


async def held_orders(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    [line] = [line for line in text.splitlines() if line.startswith("order_events_held_orders ")]
    return float(line.split()[1])
