from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest
import respx

from tests.helpers import INTERNAL
from tests.problem_details import assert_problem, assert_validation_failed

JSON = {"Content-Type": "application/json"}
ORDER = {"orderName": "Waffle trainer 2", "amount": 10_000}
# A refusal must not reflect the input back; 64 KiB is far above any honest problem body.
MAX_PROBLEM_BYTES = 65_536

MALFORMED_ORDERS: dict[str, tuple[dict[str, Any], str]] = {
    "amount as string": ({**ORDER, "amount": "100"}, "amount"),
    "fractional amount": ({**ORDER, "amount": 100.5}, "amount"),
    "boolean amount": ({**ORDER, "amount": True}, "amount"),
    "null amount": ({**ORDER, "amount": None}, "amount"),
    "missing amount": ({"orderName": "Waffle trainer 2"}, "amount"),
    "zero amount": ({**ORDER, "amount": 0}, "amount"),
    "negative amount": ({**ORDER, "amount": -1}, "amount"),
    "amount above 10^12": ({**ORDER, "amount": 10**12 + 1}, "amount"),
    "empty orderName": ({**ORDER, "orderName": ""}, "orderName"),
    "orderName of 201 chars": ({**ORDER, "orderName": "x" * 201}, "orderName"),
    "orderName of 512 KB": ({**ORDER, "orderName": "x" * 524_288}, "orderName"),
    "orderName as number": ({**ORDER, "orderName": 42}, "orderName"),
    "missing orderName": ({"amount": 10_000}, "orderName"),
    "lower-case currency": ({**ORDER, "currency": "krw"}, "currency"),
    "four-letter currency": ({**ORDER, "currency": "KRWW"}, "currency"),
    "a currency PortOne does not take": ({**ORDER, "currency": "XYZ"}, "currency"),
    "unknown field": ({**ORDER, "discount": 5_000}, "discount"),
    "metadata over 16 KiB": ({**ORDER, "metadata": {"blob": "x" * 16_385}}, "metadata"),
    "metadata as list": ({**ORDER, "metadata": ["a"]}, "metadata"),
    "customer email too long": (
        {**ORDER, "customer": {"email": "a" * 310 + "@example.com"}},
        "customer.email",
    ),
    "unknown customer field": ({**ORDER, "customer": {"nickname": "w"}}, "customer.nickname"),
}


async def order_count(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM orders")
    return count


@pytest.mark.parametrize(("body", "field"), MALFORMED_ORDERS.values(), ids=MALFORMED_ORDERS.keys())
async def test_malformed_order_is_refused_naming_the_field(
    client: httpx.AsyncClient, db: asyncpg.Connection, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/orders", json=body, headers=INTERNAL)

    assert_validation_failed(response, field)
    assert len(response.content) < MAX_PROBLEM_BYTES
    assert await order_count(db) == 0


@pytest.mark.parametrize(
    "content",
    [b"not json", b'{"orderName": "Waffle", "amount": ', b"", b"[]", b'[{"amount": 1}]', b"42"],
    ids=["text", "truncated JSON", "empty", "empty array", "array", "number"],
)
async def test_order_body_that_is_not_a_json_object_is_refused(
    client: httpx.AsyncClient, db: asyncpg.Connection, content: bytes
) -> None:
    response = await client.post("/orders", content=content, headers=INTERNAL | JSON)

    assert_validation_failed(response)
    assert await order_count(db) == 0


async def test_order_body_sent_as_plain_text_is_refused(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    response = await client.post(
        "/orders", content=b"orderName=Waffle&amount=100", headers=INTERNAL
    )

    assert_validation_failed(response)
    assert await order_count(db) == 0


async def test_largest_amount_and_longest_order_name_are_accepted(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    body = {"orderName": "x" * 200, "amount": 10**12, "metadata": {"blob": "x" * 16_000}}

    response = await client.post("/orders", json=body, headers=INTERNAL)

    assert response.status_code == 201, response.text
    assert await order_count(db) == 1


MALFORMED_COMPLETIONS: dict[str, tuple[dict[str, Any], str]] = {
    "empty object": ({}, "paymentId"),
    "empty paymentId": ({"paymentId": ""}, "paymentId"),
    "paymentId of 201 chars": ({"paymentId": "p" * 201}, "paymentId"),
    "paymentId as number": ({"paymentId": 12345}, "paymentId"),
    "null paymentId": ({"paymentId": None}, "paymentId"),
    "paymentId as object": ({"paymentId": {"id": "pay_1"}}, "paymentId"),
}


@pytest.mark.parametrize(
    ("body", "field"), MALFORMED_COMPLETIONS.values(), ids=MALFORMED_COMPLETIONS.keys()
)
async def test_malformed_completion_is_refused_without_calling_portone(
    client: httpx.AsyncClient, portone: respx.MockRouter, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/payments/complete", json=body)

    assert_validation_failed(response, field)
    assert portone.calls.call_count == 0


@pytest.mark.parametrize(
    "content",
    [b"not json", b'{"paymentId": ', b"", b'["pay_1"]'],
    ids=["text", "truncated", "empty", "array"],
)
async def test_completion_body_that_is_not_a_json_object_is_refused_without_calling_portone(
    client: httpx.AsyncClient, portone: respx.MockRouter, content: bytes
) -> None:
    response = await client.post("/payments/complete", content=content, headers=JSON)

    assert_validation_failed(response)
    assert portone.calls.call_count == 0


async def test_unknown_route_is_a_not_found_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/no-such-route")

    assert_problem(response, 404, "NOT_FOUND")


async def test_wrong_method_is_a_method_not_allowed_problem(
    client: httpx.AsyncClient, portone: respx.MockRouter
) -> None:
    response = await client.get("/payments/complete")

    assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in response.headers["allow"]
    assert portone.calls.call_count == 0
