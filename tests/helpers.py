"""Small steps the tests share."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import respx

from tests.conftest import TOKEN
from tests.portone_payloads import payment_body

INTERNAL = {"Authorization": f"Bearer {TOKEN}"}


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


async def order_row(db: asyncpg.Connection, order_id: str) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM orders WHERE id = $1", order_id)
    assert row is not None
    return row


async def events(db: asyncpg.Connection, order_id: str) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM order_events WHERE order_id = $1 ORDER BY id", order_id)


async def transitions(db: asyncpg.Connection, order_id: str) -> list[tuple[str, str]]:
    return [
        (e["from_status"], e["to_status"])
        for e in await events(db, order_id)
        if e["from_status"] != e["to_status"]
    ]
