"""GET /orders: the order feed for services that prefer pulling, paged by (updatedAt, id)."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest
import respx

from tests.helpers import INTERNAL, TOKEN, create_order
from tests.portone_payloads import iso, payment_body
from tests.problem_details import assert_problem, assert_validation_failed

Position = tuple[datetime, str]


def position(order: dict[str, Any]) -> Position:
    return datetime.fromisoformat(order["updatedAt"]), order["orderId"]


@pytest.fixture
def portone_pays(portone: respx.MockRouter) -> respx.Route:
    """PortOne says every payment is PAID, for the order's amount."""

    def paid(request: httpx.Request, payment_id: str) -> httpx.Response:
        return httpx.Response(200, json=payment_body(payment_id))

    return portone.get(path__regex=r"^/payments/(?P<payment_id>[^/]+)$").mock(side_effect=paid)


async def complete(client: httpx.AsyncClient, order: dict[str, Any]) -> None:
    response = await client.post("/payments/complete", json={"paymentId": order["paymentId"]})
    assert response.status_code == 200, response.text


async def feed(client: httpx.AsyncClient, **params: Any) -> httpx.Response:
    return await client.get("/orders", params=params, headers=INTERNAL)


async def page(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await feed(client, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"orders", "nextCursor"}
    return body


async def follow(
    client: httpx.AsyncClient, pause: float = 0.0, cursor: str | None = None, **params: Any
) -> list[dict[str, Any]]:
    """Every order of the feed, following nextCursor until it is null."""
    orders: list[dict[str, Any]] = []
    for _ in range(500):
        body = await page(client, **params, **({"cursor": cursor} if cursor else {}))
        assert len(body["orders"]) <= params.get("limit", 50)
        orders += body["orders"]
        cursor = body["nextCursor"]
        if cursor is None:
            return orders
        await asyncio.sleep(pause)
    raise AssertionError("the feed never ended")


def cursor_of(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.usefixtures("portone_pays")
async def test_pages_through_orders_changed_after_a_timestamp_without_gaps_or_repeats(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    untouched = [await create_order(client) for _ in range(5)]
    since: datetime = await db.fetchval("SELECT clock_timestamp()")
    changed = [await create_order(client) for _ in range(250)]
    for order in changed:
        await complete(client, order)

    stop = asyncio.Event()
    started = asyncio.Event()
    newcomers: list[dict[str, Any]] = []
    slow_writes = 0

    async def shop_keeps_selling() -> None:
        while not stop.is_set():
            order = await create_order(client)
            newcomers.append(order)
            started.set()
            await asyncio.sleep(0)
            await complete(client, order)

    async def slow_writer() -> None:
        """Writes whose updatedAt is stamped well before they commit."""
        nonlocal slow_writes
        await started.wait()
        while not stop.is_set():
            async with db.transaction():
                await db.execute(
                    "UPDATE orders SET order_name = order_name || '+',"
                    " updated_at = clock_timestamp() WHERE id = $1",
                    newcomers[-1]["orderId"],
                )
                await asyncio.sleep(0.03)
            slow_writes += 1
            await asyncio.sleep(0.01)

    background = [asyncio.create_task(shop_keeps_selling()), asyncio.create_task(slow_writer())]
    await started.wait()
    try:
        seen = await follow(client, pause=0.01, updatedAfter=iso(since), limit=20)
    finally:
        stop.set()
        await asyncio.gather(*background)

    assert newcomers
    assert slow_writes
    positions = [position(order) for order in seen]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)  # no repeats
    assert all(at > since for at, _ in positions)
    ids = [order["orderId"] for order in seen]
    for order in changed:
        assert ids.count(order["orderId"]) == 1, order["orderId"]
    assert not {o["orderId"] for o in untouched} & set(ids)
    assert {o["status"] for o in seen if o["orderId"] in {c["orderId"] for c in changed}} == {
        "PAID"
    }
    # No gaps: every order whose last change sorts before where the reader stopped was read
    # as it now stands, whatever was in flight while it paged.
    last = positions[-1]
    settled = await db.fetch(
        "SELECT id, updated_at FROM orders WHERE updated_at > $1"
        " AND (updated_at, id) <= ($2, $3) ORDER BY updated_at, id",
        since,
        *last,
    )
    assert {(row["updated_at"], row["id"]) for row in settled} <= set(positions)

    # Once nothing moves, paging again gives exactly what changed after the timestamp.
    everything = await follow(client, updatedAfter=iso(since), limit=20)
    rows = await db.fetch(
        "SELECT id FROM orders WHERE updated_at > $1 ORDER BY updated_at, id", since
    )
    assert [order["orderId"] for order in everything] == [row["id"] for row in rows]
    assert len(rows) == 250 + len(newcomers)


async def test_full_page_at_the_end_is_followed_by_an_empty_one(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    since: datetime = await db.fetchval("SELECT clock_timestamp()")
    orders = [await create_order(client) for _ in range(4)]

    first = await page(client, updatedAfter=iso(since), limit=2)
    second = await page(client, updatedAfter=iso(since), limit=2, cursor=first["nextCursor"])
    third = await page(client, updatedAfter=iso(since), limit=2, cursor=second["nextCursor"])

    assert [o["orderId"] for o in first["orders"] + second["orders"]] == [
        o["orderId"] for o in orders
    ]
    assert third == {"orders": [], "nextCursor": None}


async def test_a_write_still_in_flight_is_not_skipped(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    late = await create_order(client)
    since: datetime = await db.fetchval("SELECT clock_timestamp()")
    early = await create_order(client)
    first = await page(client, updatedAfter=iso(since), limit=1)
    assert [o["orderId"] for o in first["orders"]] == [early["orderId"]]

    transaction = db.transaction()
    await transaction.start()
    try:
        # Stamped now, committed only after a newer order is visible.
        await db.execute(
            "UPDATE orders SET order_name = 'late', updated_at = clock_timestamp() WHERE id = $1",
            late["orderId"],
        )
        newer = await create_order(client)
        while_in_flight = await page(
            client, updatedAfter=iso(since), limit=1, cursor=first["nextCursor"]
        )
    finally:
        await transaction.commit()

    # Nothing past the write in flight is handed out, so the reader cannot step over it.
    assert while_in_flight["orders"] == []
    rest = await follow(client, updatedAfter=iso(since), limit=1, cursor=first["nextCursor"])
    assert [o["orderId"] for o in rest] == [late["orderId"], newer["orderId"]]


@pytest.mark.usefixtures("db")
async def test_status_filter_is_repeatable(
    client: httpx.AsyncClient, portone: respx.MockRouter
) -> None:
    async def order_that_portone_says(status: str, **payment: Any) -> str:
        order = await create_order(client)
        portone.get(f"/payments/{order['paymentId']}").respond(
            200, json=payment_body(order["paymentId"], status=status, **payment)
        )
        await client.post("/payments/complete", json={"paymentId": order["paymentId"]})
        order_id: str = order["orderId"]
        return order_id

    pending = (await create_order(client))["orderId"]
    paid = [await order_that_portone_says("PAID") for _ in range(2)]
    cancelled = await order_that_portone_says("CANCELLED", cancelled=10_000)
    awaiting = await order_that_portone_says("VIRTUAL_ACCOUNT_ISSUED", virtual_account=True)

    async def ids(*statuses: str) -> set[str]:
        query = {"status": list(statuses)}
        response = await client.get("/orders", params=query, headers=INTERNAL)
        assert response.status_code == 200, response.text
        orders = response.json()["orders"]
        assert all(o["status"] in statuses for o in orders) or not statuses
        return {o["orderId"] for o in orders}

    assert await ids("PAID") == set(paid)
    assert await ids("PAID", "CANCELLED") == {*paid, cancelled}
    assert await ids("AWAITING_DEPOSIT", "PENDING") == {awaiting, pending}
    assert await ids("REFUNDED") == set()
    assert await ids() == {pending, *paid, cancelled, awaiting}

    one = await page(client, status="PAID", limit=1)
    two = await page(client, status="PAID", limit=1, cursor=one["nextCursor"])
    assert {o["orderId"] for o in one["orders"] + two["orders"]} == set(paid)

    assert_validation_failed(await feed(client, status="paid"), "status.0")


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        "not-a-cursor",
        cursor_of({}),
        cursor_of(["2026-11-27T00:00:00Z"]),
        cursor_of(["yesterday", "ord_1"]),
        cursor_of([1, 2]),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        cursor_of(["0001-01-01T00:00:00+14:00", "ord_1"]),  # before year 1 in UTC
        cursor_of(["2026-11-27T00:00:00+00:00", "ord_\u0000"]),  # Postgres text cannot hold NUL
    ],
    ids=[
        "not base64",
        "not json",
        "object",
        "one item",
        "not a time",
        "numbers",
        "not utf-8",
        "time out of range",
        "NUL in id",
    ],
)
@pytest.mark.usefixtures("db")
async def test_malformed_cursor_is_a_validation_failure(
    client: httpx.AsyncClient, cursor: str
) -> None:
    await create_order(client)

    response = await feed(client, cursor=cursor)

    assert_validation_failed(response, "cursor")


@pytest.mark.parametrize(
    "updated_after",
    ["yesterday", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"],
    ids=["not a time", "before year 1 in UTC", "after year 9999 in UTC"],
)
@pytest.mark.usefixtures("db")
async def test_unusable_updated_after_is_a_validation_failure(
    client: httpx.AsyncClient, updated_after: str
) -> None:
    response = await feed(client, updatedAfter=updated_after)

    assert_validation_failed(response, "updatedAfter")


@pytest.mark.parametrize("limit", ["0", "201", "x"])
@pytest.mark.usefixtures("db")
async def test_limit_out_of_range_is_a_validation_failure(
    client: httpx.AsyncClient, limit: str
) -> None:
    assert_validation_failed(await feed(client, limit=limit), "limit")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}],
    ids=["none", "wrong", "no scheme"],
)
@pytest.mark.usefixtures("db")
async def test_order_feed_needs_the_internal_token(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/orders", headers=headers)

    assert_problem(response, 401, "UNAUTHORIZED")
