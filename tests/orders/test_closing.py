"""Orders the shop closes, by hand or at their expiry: they take no money from then on,
and money that still arrives for them is given back exactly once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import respx
from pydantic import SecretStr

from app.config import Settings
from app.wiring import Services
from tests.emulated_portone import EmulatedPortOne
from tests.helpers import INTERNAL, complete, create_order, events, make_settings, order_row
from tests.problem_details import assert_problem, assert_validation_failed

EVENTS_URL = "https://shop.test/order-events"
EVENTS_SECRET = "whsec_b3JkZXItZXZlbnRzLXNlY3JldC1mb3ItdGhlLXRlc3Rz"


@pytest.fixture
def settings(database_url: str) -> Settings:
    # With order events, so the outbox shows order.cancelled.
    return make_settings(
        database_url, order_events_url=EVENTS_URL, order_events_secret=SecretStr(EVENTS_SECRET)
    )


@pytest.fixture
def emulated(portone: respx.MockRouter) -> EmulatedPortOne:
    return EmulatedPortOne(portone)


async def cancel(client: httpx.AsyncClient, order: dict[str, Any]) -> httpx.Response:
    return await client.post(f"/orders/{order['orderId']}/cancel", headers=INTERNAL)


async def outbox_types(db: asyncpg.Connection, order: dict[str, Any]) -> list[str]:
    rows = await db.fetch(
        "SELECT type FROM outbox_events WHERE order_id = $1 ORDER BY seq", order["orderId"]
    )
    return [row["type"] for row in rows]


async def expire(db: asyncpg.Connection, order: dict[str, Any]) -> None:
    await db.execute(
        "UPDATE orders SET expires_at = now() - interval '1 second' WHERE id = $1",
        order["orderId"],
    )


def in_days(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def test_the_shop_cancels_a_pending_order(
    client: httpx.AsyncClient, emulated: EmulatedPortOne, db: asyncpg.Connection
) -> None:
    order = await create_order(client)

    first = await cancel(client, order)
    again = await cancel(client, order)

    assert first.status_code == 200, first.text
    assert first.json()["status"] == "CANCELLED"
    assert again.status_code == 200
    assert again.json()["status"] == "CANCELLED"
    [entry] = await events(db, order["orderId"])
    assert (entry["source"], entry["from_status"], entry["to_status"]) == (
        "cancel",
        "PENDING",
        "CANCELLED",
    )
    assert await outbox_types(db, order) == ["order.cancelled"]
    assert emulated.requests == []  # nothing to undo at PortOne


async def test_an_order_that_took_money_is_not_cancellable(
    client: httpx.AsyncClient, emulated: EmulatedPortOne, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    emulated.pay(order)
    assert (await complete(client, order["paymentId"])).status_code == 200

    response = await cancel(client, order)

    assert_problem(response, 409, "ORDER_NOT_CANCELLABLE")
    assert (await order_row(db, order["orderId"]))["status"] == "PAID"


async def test_cancel_is_internal_and_knows_its_orders(client: httpx.AsyncClient) -> None:
    order = await create_order(client)

    stranger = await client.post(f"/orders/{order['orderId']}/cancel")
    unknown = await client.post("/orders/ord_nope/cancel", headers=INTERNAL)

    assert_problem(stranger, 401, "UNAUTHORIZED")
    assert_problem(unknown, 404, "ORDER_NOT_FOUND")


async def test_cancelling_an_order_awaiting_its_deposit_closes_the_virtual_account(
    client: httpx.AsyncClient, emulated: EmulatedPortOne, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    emulated.pay(order, method="VIRTUAL_ACCOUNT")
    assert (await complete(client, order["paymentId"])).json()["status"] == "AWAITING_DEPOSIT"

    response = await cancel(client, order)

    assert response.json()["status"] == "CANCELLED"
    [close] = emulated.calls("POST", "/virtual-account/close")
    assert close.headers["Idempotency-Key"] == f'"compensation-close-{order["paymentId"]}"'
    assert emulated.emulator.get(order["paymentId"]).status == "CANCELLED"
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["compensation_status"]) == ("CANCELLED", "DONE")


async def test_a_virtual_account_portone_failed_to_close_is_closed_by_the_next_pass(
    client: httpx.AsyncClient,
    emulated: EmulatedPortOne,
    db: asyncpg.Connection,
    services: Services,
) -> None:
    order = await create_order(client)
    emulated.pay(order, method="VIRTUAL_ACCOUNT")
    await complete(client, order["paymentId"])
    emulated.unavailable.add(f"/payments/{order['paymentId']}/virtual-account/close")

    await cancel(client, order)
    owed = await order_row(db, order["orderId"])
    await services.reconciler().run_pass()

    assert owed["compensation_status"] == "OWED"
    assert emulated.emulator.get(order["paymentId"]).status == "CANCELLED"
    assert (await order_row(db, order["orderId"]))["compensation_status"] == "DONE"


async def test_a_payment_that_arrives_for_a_cancelled_order_is_rejected_and_given_back_once(
    client: httpx.AsyncClient, emulated: EmulatedPortOne, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    await cancel(client, order)
    emulated.pay(order)  # the customer paid in a window opened before the shop closed it

    answers = await asyncio.gather(*(complete(client, order["paymentId"]) for _ in range(4)))
    webhooks = await emulated.deliver_webhooks(client)

    for answer in answers:
        problem = assert_problem(answer, 409, "PAYMENT_REJECTED")
        assert problem["reason"] == "ORDER_CLOSED"
    assert {w.status_code for w in webhooks} == {200}
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["rejection_reason"]) == ("REJECTED", "ORDER_CLOSED")
    assert row["compensation_status"] == "DONE"
    assert len(emulated.calls("POST", "/cancel")) == 1
    assert emulated.emulator.get(order["paymentId"]).status == "CANCELLED"
    assert await outbox_types(db, order) == ["order.cancelled", "order.rejected"]


async def test_expires_at_must_be_ahead_and_within_a_week(client: httpx.AsyncClient) -> None:
    body = {"orderName": "Seat 14C", "amount": 10_000}

    past = await client.post("/orders", json=body | {"expiresAt": in_days(-1)}, headers=INTERNAL)
    far = await client.post("/orders", json=body | {"expiresAt": in_days(8)}, headers=INTERNAL)
    naive = await client.post(
        "/orders", json=body | {"expiresAt": "2030-01-01T00:00:00"}, headers=INTERNAL
    )
    held = await create_order(client, expiresAt=in_days(6.9))

    assert_validation_failed(past, "expiresAt")
    assert_validation_failed(far, "expiresAt")
    assert_validation_failed(naive, "expiresAt")
    assert held["expiresAt"] is not None


async def test_the_reconciler_closes_an_order_at_its_expiry(
    client: httpx.AsyncClient,
    emulated: EmulatedPortOne,
    db: asyncpg.Connection,
    services: Services,
) -> None:
    order = await create_order(client, expiresAt=in_days(0.01))
    await expire(db, order)

    summary = await services.reconciler().run_pass()

    assert summary.closed == 1
    assert summary.ok
    [entry] = await events(db, order["orderId"])
    assert (entry["source"], entry["to_status"], entry["detail"]) == (
        "reconcile",
        "CANCELLED",
        "expired",
    )
    assert await outbox_types(db, order) == ["order.cancelled"]
    # Looked at once more at its expiry: PortOne has no payment for it.
    assert len(emulated.calls("GET", f"/payments/{order['paymentId']}")) == 1


async def test_a_payment_taken_just_before_the_expiry_is_given_back_at_it(
    client: httpx.AsyncClient,
    emulated: EmulatedPortOne,
    db: asyncpg.Connection,
    services: Services,
) -> None:
    order = await create_order(client, expiresAt=in_days(0.01))
    emulated.pay(order)  # its browser never came back, and its webhook was lost
    emulated.webhooks.clear()
    await expire(db, order)

    await services.reconciler().run_pass()

    row = await order_row(db, order["orderId"])
    assert (row["status"], row["rejection_reason"]) == ("REJECTED", "ORDER_CLOSED")
    assert len(emulated.calls("POST", "/cancel")) == 1
    assert emulated.emulator.get(order["paymentId"]).status == "CANCELLED"


async def test_a_payment_first_seen_after_the_expiry_is_rejected_before_any_pass(
    client: httpx.AsyncClient, emulated: EmulatedPortOne, db: asyncpg.Connection
) -> None:
    order = await create_order(client, expiresAt=in_days(0.01))
    emulated.pay(order)
    await expire(db, order)

    response = await complete(client, order["paymentId"])

    assert assert_problem(response, 409, "PAYMENT_REJECTED")["reason"] == "ORDER_CLOSED"
    assert emulated.emulator.get(order["paymentId"]).status == "CANCELLED"


async def test_an_issued_virtual_account_seen_again_after_the_expiry_is_not_new_money(
    client: httpx.AsyncClient, emulated: EmulatedPortOne, db: asyncpg.Connection
) -> None:
    order = await create_order(client, expiresAt=in_days(0.01))
    emulated.pay(order, method="VIRTUAL_ACCOUNT")
    await complete(client, order["paymentId"])
    await expire(db, order)

    await emulated.deliver_webhooks(client)  # the webhook, late

    assert (await order_row(db, order["orderId"]))["status"] == "AWAITING_DEPOSIT"
    assert emulated.calls("POST", "/virtual-account/close") == []
