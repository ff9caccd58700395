from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.helpers import INTERNAL, PAYMENT_RESULT, TOKEN
from tests.portone_payloads import STORE_ID
from tests.problem_details import assert_problem, assert_validation_failed

ORDER = {"orderName": "Waffle trainer 2", "amount": 10_000, "currency": "KRW"}
CUSTOMER = {
    "id": "customer-7",
    "name": "Kim Minji",
    "email": "minji@example.com",
    "phoneNumber": "010-1234-5678",
}
ORDER_FIELDS = PAYMENT_RESULT | {
    "rejectionReason",
    "customer",
    "metadata",
    "checkout",
    "createdAt",
    "updatedAt",
}


async def post_order(
    client: httpx.AsyncClient, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    headers = INTERNAL if key is None else {**INTERNAL, "Idempotency-Key": key}
    return await client.post("/orders", json=body, headers=headers)


async def order_count(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM orders")
    return count


def utc(value: str) -> datetime:
    at = datetime.fromisoformat(value)
    assert at.utcoffset() == timedelta(0), value
    return at


async def test_created_order_is_pending_with_browser_checkout(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    metadata = {"cartId": "cart-42", "items": [{"sku": "W-2", "quantity": 1}]}
    response = await post_order(client, {**ORDER, "customer": CUSTOMER, "metadata": metadata})

    assert response.status_code == 201, response.text
    order = response.json()
    assert set(order) >= ORDER_FIELDS
    assert order["orderId"].startswith("ord_")
    assert order["paymentId"].startswith("pay_")
    assert order["orderName"] == "Waffle trainer 2"
    assert order["amount"] == 10_000
    assert order["currency"] == "KRW"
    assert order["status"] == "PENDING"
    assert order["paidAt"] is None
    assert order["refundedAmount"] == 0
    assert order["virtualAccount"] is None
    assert order["rejectionReason"] is None
    assert order["customer"] == CUSTOMER
    assert order["metadata"] == metadata
    assert order["checkout"] == {
        "storeId": STORE_ID,
        "channelKey": "channel-key-test",
        "paymentId": order["paymentId"],
        "orderName": "Waffle trainer 2",
        "totalAmount": 10_000,
        "currency": "KRW",
    }
    assert utc(order["createdAt"]) <= utc(order["updatedAt"])


async def test_created_order_is_stored(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    response = await post_order(client, {**ORDER, "customer": CUSTOMER, "metadata": {"a": 1}})
    order = response.json()

    row = await db.fetchrow("SELECT * FROM orders WHERE id = $1", order["orderId"])
    assert row is not None
    assert row["payment_id"] == order["paymentId"]
    assert row["order_name"] == "Waffle trainer 2"
    assert row["amount"] == 10_000
    assert row["currency"] == "KRW"
    assert row["status"] == "PENDING"
    assert row["refunded_amount"] == 0
    assert json.loads(row["customer"]) == CUSTOMER
    assert json.loads(row["metadata"]) == {"a": 1}


async def test_currency_defaults_to_krw(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    response = await post_order(client, {"orderName": "Waffle trainer 2", "amount": 500})

    assert response.status_code == 201, response.text
    order = response.json()
    assert order["currency"] == "KRW"
    assert order["checkout"]["currency"] == "KRW"
    assert order["customer"] is None
    assert order["metadata"] == {}
    row = await db.fetchrow("SELECT currency FROM orders WHERE id = $1", order["orderId"])
    assert row is not None
    assert row["currency"] == "KRW"


async def test_each_order_gets_its_own_ids(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    first = (await post_order(client, ORDER)).json()
    second = (await post_order(client, ORDER)).json()

    assert first["orderId"] != second["orderId"]
    assert first["paymentId"] != second["paymentId"]
    assert await order_count(db) == 2


async def test_repeated_idempotency_key_and_body_return_the_first_order(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    first = await post_order(client, ORDER, key="order-key-1")
    again = await post_order(client, ORDER, key="order-key-1")

    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text
    assert again.json()["orderId"] == first.json()["orderId"]
    assert again.json()["paymentId"] == first.json()["paymentId"]
    assert await order_count(db) == 1


async def test_idempotency_key_reused_with_another_body_is_refused(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    first = await post_order(client, ORDER, key="order-key-2")
    other = await post_order(client, {**ORDER, "amount": 20_000}, key="order-key-2")

    assert first.status_code == 201, first.text
    assert_problem(other, 409, "IDEMPOTENCY_KEY_REUSED")
    rows = await db.fetch("SELECT id, amount FROM orders")
    assert [(row["id"], row["amount"]) for row in rows] == [(first.json()["orderId"], 10_000)]


async def test_concurrent_requests_with_one_idempotency_key_create_one_order(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    responses = await asyncio.gather(
        *(post_order(client, ORDER, key="order-key-race") for _ in range(10))
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 9 + [201], [r.text for r in responses]
    assert len({response.json()["orderId"] for response in responses}) == 1
    assert await order_count(db) == 1


async def test_idempotency_key_longer_than_255_is_refused(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    response = await post_order(client, ORDER, key="k" * 256)

    assert_validation_failed(response)
    assert await order_count(db) == 0


async def test_idempotency_key_of_255_is_accepted(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    response = await post_order(client, ORDER, key="k" * 255)

    assert response.status_code == 201, response.text
    assert await order_count(db) == 1


async def test_order_is_read_back_as_created(client: httpx.AsyncClient) -> None:
    created = (await post_order(client, {**ORDER, "customer": CUSTOMER})).json()

    response = await client.get(f"/orders/{created['orderId']}", headers=INTERNAL)

    assert response.status_code == 200, response.text
    assert response.json() == created


async def test_unknown_order_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get("/orders/ord_01JD0000000000000000000000", headers=INTERNAL)

    assert_problem(response, 404, "ORDER_NOT_FOUND")


async def test_new_order_has_no_events(client: httpx.AsyncClient) -> None:
    order = (await post_order(client, ORDER)).json()

    response = await client.get(f"/orders/{order['orderId']}/history", headers=INTERNAL)

    assert response.status_code == 200, response.text
    assert response.json() == {"history": []}


async def test_events_of_unknown_order_are_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get("/orders/ord_01JD0000000000000000000000/history", headers=INTERNAL)

    assert_problem(response, 404, "ORDER_NOT_FOUND")


BAD_CREDENTIALS = {
    "no header": {},
    "wrong token": {"Authorization": "Bearer " + "x" * len(TOKEN)},
    "wrong scheme": {"Authorization": f"Basic {TOKEN}"},
    "token without scheme": {"Authorization": TOKEN},
    "longer token": {"Authorization": f"Bearer {TOKEN}x"},
    "shorter token": {"Authorization": f"Bearer {TOKEN[:-1]}"},
    "empty token": {"Authorization": "Bearer "},
}


@pytest.mark.parametrize("headers", BAD_CREDENTIALS.values(), ids=BAD_CREDENTIALS.keys())
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/orders"), ("GET", "/orders/{id}"), ("GET", "/orders/{id}/history")],
)
async def test_internal_endpoints_refuse_bad_credentials(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    method: str,
    path: str,
    headers: dict[str, str],
) -> None:
    existing = (await post_order(client, ORDER)).json()

    response = await client.request(
        method, path.format(id=existing["orderId"]), json=ORDER, headers=headers
    )

    assert_problem(response, 401, "UNAUTHORIZED")
    assert await order_count(db) == 1


@pytest.mark.parametrize("levels", [33, 990, 5_000])
async def test_deeply_nested_metadata_is_a_validation_failure(
    client: httpx.AsyncClient, db: asyncpg.Connection, levels: int
) -> None:
    body = {**ORDER, "metadata": {"a": 1}}
    text = json.dumps(body).replace('{"a": 1}', '{"a": ' + "[" * levels + "]" * levels + "}")

    response = await client.post(
        "/orders", content=text, headers={**INTERNAL, "Content-Type": "application/json"}
    )

    assert_validation_failed(response)  # at `metadata`, or the `body` past the parser's reach
    assert await db.fetchval("SELECT count(*) FROM orders") == 0


async def test_metadata_nested_as_deep_as_allowed_is_kept(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    nested: Any = "deepest"
    for _ in range(31):  # the metadata object itself is the first level
        nested = [nested]

    response = await post_order(client, {**ORDER, "metadata": {"a": nested}})

    assert response.status_code == 201, response.text
    assert response.json()["metadata"] == {"a": nested}
