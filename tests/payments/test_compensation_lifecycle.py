"""A compensation is done only when PortOne shows it: a cancellation PortOne holds is never
sent twice, a FAILED one stays owed (and counted) and is tried again after its backoff."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest
import respx

from app import reconcile as app_reconcile
from app.wiring import Services
from tests.emulated_portone import EmulatedPortOne
from tests.helpers import after_backoff, create_order, events, order_row
from tests.problem_details import assert_problem

TAMPERED = 100


@pytest.fixture
def emulated(portone: respx.MockRouter) -> EmulatedPortOne:
    return EmulatedPortOne(portone)


async def tampered(client: httpx.AsyncClient, emulated: EmulatedPortOne) -> dict[str, Any]:
    """An order paid with a tampered amount, rejected by its completion."""
    order = await create_order(client, amount=10_000)
    emulated.pay(order, amount=TAMPERED)
    return order


async def complete(client: httpx.AsyncClient, order: dict[str, Any]) -> None:
    answer = await client.post("/payments/complete", json={"paymentId": order["paymentId"]})
    assert_problem(answer, 409, "PAYMENT_REJECTED")


def cancellations(emulated: EmulatedPortOne, order: dict[str, Any]) -> list[str]:
    return [c.status for c in emulated.emulator.get(order["paymentId"]).cancellations]


async def owed_gauge(client: httpx.AsyncClient) -> float:
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith("compensations_owed "):
            return float(line.split()[1])
    raise AssertionError("compensations_owed is not exposed")


async def attempts(db: asyncpg.Connection, order: dict[str, Any]) -> list[str]:
    return [
        e["detail"] for e in await events(db, order["orderId"]) if e["source"] == "compensation"
    ]


async def test_a_cancellation_portone_fails_stays_owed_counted_and_is_retried_then_backs_off(
    client: httpx.AsyncClient,
    emulated: EmulatedPortOne,
    services: Services,
    db: asyncpg.Connection,
) -> None:
    order = await tampered(client, emulated)
    emulated.next_cancellation(order, "FAILED")

    await complete(client, order)

    row = await order_row(db, order["orderId"])
    assert (row["status"], row["compensation_status"]) == ("REJECTED", "OWED")
    assert row["compensation_next_attempt_at"] is not None
    assert await owed_gauge(client) == 1
    assert cancellations(emulated, order) == ["FAILED"]
    emulated.next_cancellation(order, "FAILED")
    await services.reconciler().run_pass()  # the very next pass tries again …
    assert cancellations(emulated, order) == ["FAILED", "FAILED"]
    await services.reconciler().run_pass()
    assert cancellations(emulated, order) == ["FAILED", "FAILED"]  # … then not before backoff

    await after_backoff(db, order["orderId"])
    await services.reconciler().run_pass()

    assert cancellations(emulated, order) == ["FAILED", "FAILED", "SUCCEEDED"]
    assert (await order_row(db, order["orderId"]))["compensation_status"] == "DONE"
    assert await owed_gauge(client) == 0
    first, second, third = await attempts(db, order)
    assert "FAILED" in first
    assert "FAILED" in second
    assert "SUCCEEDED" in third
    keys = [r.headers["idempotency-key"] for r in emulated.calls("POST", "/cancel")]
    assert len(set(keys)) == 3  # PortOne answered each: every next one is a new intent


async def test_a_cancellation_portone_holds_is_never_sent_again_and_settles_from_the_payment(
    client: httpx.AsyncClient,
    emulated: EmulatedPortOne,
    services: Services,
    db: asyncpg.Connection,
) -> None:
    order = await tampered(client, emulated)
    emulated.next_cancellation(order, "REQUESTED")

    await complete(client, order)
    await after_backoff(db, order["orderId"])
    await services.reconciler().run_pass()

    row = await order_row(db, order["orderId"])
    assert row["compensation_status"] == "REQUESTED"
    held = emulated.emulator.get(order["paymentId"]).cancellations[0].id
    assert row["compensation_cancellation_id"] == held
    assert cancellations(emulated, order) == ["REQUESTED"]  # the pass did not send again
    assert await owed_gauge(client) == 1

    emulated.settle(order, "SUCCEEDED")
    await emulated.deliver_webhooks(client)

    row = await order_row(db, order["orderId"])
    assert (row["status"], row["compensation_status"]) == ("REJECTED", "DONE")
    assert row["refunded_amount"] == TAMPERED
    assert cancellations(emulated, order) == ["SUCCEEDED"]
    assert await owed_gauge(client) == 0


async def test_a_held_cancellation_portone_fails_is_owed_again_and_cancelled_once(
    client: httpx.AsyncClient,
    emulated: EmulatedPortOne,
    services: Services,
    db: asyncpg.Connection,
) -> None:
    order = await tampered(client, emulated)
    emulated.next_cancellation(order, "REQUESTED")
    await complete(client, order)
    emulated.settle(order, "FAILED")  # no webhook: the reconciler re-reads what is held

    summary = await services.reconciler().run_pass()  # settles it FAILED: owed again, and due

    assert (summary.settled, summary.compensated) == (1, 1)
    assert cancellations(emulated, order) == ["FAILED", "SUCCEEDED"]
    assert (await order_row(db, order["orderId"]))["compensation_status"] == "DONE"
    await after_backoff(db, order["orderId"])
    await services.reconciler().run_pass()
    assert cancellations(emulated, order) == ["FAILED", "SUCCEEDED"]


async def test_a_held_partial_console_cancellation_that_succeeds_leaves_the_rest_owed(
    client: httpx.AsyncClient,
    emulated: EmulatedPortOne,
    services: Services,
    db: asyncpg.Connection,
) -> None:
    """The compensation waits for what PortOne holds; when that was only part of the
    payment, the rest is still the customer's money."""
    order = await create_order(client, amount=10_000)
    emulated.pay(order, amount=1_000)
    emulated.next_cancellation(order, "REQUESTED")
    emulated.cancel_in_console(order, 400)
    await complete(client, order)
    assert (await order_row(db, order["orderId"]))["compensation_status"] == "REQUESTED"

    emulated.settle(order, "SUCCEEDED")
    await emulated.deliver_webhooks(client)
    row = await order_row(db, order["orderId"])
    assert row["compensation_status"] == "OWED"
    assert await owed_gauge(client) == 1
    await services.reconciler().run_pass()

    payment = emulated.emulator.get(order["paymentId"])
    assert [(c.status, c.amount) for c in payment.cancellations] == [
        ("SUCCEEDED", 400),
        ("SUCCEEDED", 600),
    ]
    assert payment.status == "CANCELLED"
    assert (await order_row(db, order["orderId"]))["compensation_status"] == "DONE"
    assert await owed_gauge(client) == 0


async def test_a_pass_retries_a_bounded_number_of_compensations_and_the_next_goes_on(
    client: httpx.AsyncClient,
    emulated: EmulatedPortOne,
    services: Services,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    orders = [await tampered(client, emulated) for _ in range(3)]
    for order in orders:
        emulated.next_cancellation(order, "FAILED")
        await complete(client, order)
        await after_backoff(db, order["orderId"])
    monkeypatch.setattr(app_reconcile, "ORDERS_PER_PASS", 2)

    first = await services.reconciler().run_pass()
    second = await services.reconciler().run_pass()

    assert (first.compensated, second.compensated) == (2, 1)
    for order in orders:
        assert cancellations(emulated, order) == ["FAILED", "SUCCEEDED"]
    assert await owed_gauge(client) == 0
