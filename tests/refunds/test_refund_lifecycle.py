"""A refund is followed to PortOne's last word: REQUESTED until PortOne settles it,
SUCCEEDED or FAILED; a FAILED one is visible and may be tried again under a new key."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import respx
from pydantic import SecretStr

from app.config import Settings
from app.refunds import settlement
from app.wiring import Services
from tests.emulated_portone import EmulatedPortOne
from tests.helpers import INTERNAL, events, make_settings
from tests.problem_details import assert_problem

EVENTS_URL = "https://shop.test/order-events"
EVENTS_SECRET = "whsec_b3JkZXItZXZlbnRzLXNlY3JldC1mb3ItdGhlLXRlc3Rz"


@pytest.fixture
def settings(database_url: str) -> Settings:
    # With order events, so the outbox can be read for order.refund_failed.
    return make_settings(
        database_url,
        order_events_url=EVENTS_URL,
        order_events_secret=SecretStr(EVENTS_SECRET),
    )


@pytest.fixture
def emulated(portone: respx.MockRouter) -> EmulatedPortOne:
    return EmulatedPortOne(portone)


async def refund(
    client: httpx.AsyncClient, order: dict[str, Any], key: str, amount: int | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"reason": f"customer asked ({key})"}
    if amount is not None:
        body["amount"] = amount
    headers = INTERNAL | {"Idempotency-Key": key}
    return await client.post(f"/orders/{order['orderId']}/refund", json=body, headers=headers)


async def read(client: httpx.AsyncClient, order: dict[str, Any]) -> dict[str, Any]:
    response = await client.get(f"/orders/{order['orderId']}", headers=INTERNAL)
    body: dict[str, Any] = response.json()
    return body


async def outbox_types(db: asyncpg.Connection, order: dict[str, Any]) -> list[str]:
    rows = await db.fetch(
        "SELECT type FROM outbox_events WHERE order_id = $1 ORDER BY seq", order["orderId"]
    )
    return [row["type"] for row in rows]


async def failed_refunds_counted(client: httpx.AsyncClient) -> float:
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith("refunds_failed_total "):
            return float(line.split()[1])
    raise AssertionError("refunds_failed_total is not exposed")


async def test_a_refund_portone_holds_is_accepted_and_settled_by_portones_webhook(
    client: httpx.AsyncClient, emulated: EmulatedPortOne
) -> None:
    order = await emulated.paid_order(client)
    emulated.next_cancellation(order, "REQUESTED")

    accepted = await refund(client, order, "r-1", amount=3_000)

    assert accepted.status_code == 202, accepted.text
    assert (accepted.json()["status"], accepted.json()["refundedAmount"]) == ("PAID", 0)
    [listed] = accepted.json()["refunds"]
    assert (listed["amount"], listed["status"], listed["settledAt"]) == (3_000, "REQUESTED", None)

    emulated.settle(order, "SUCCEEDED")
    answers = await emulated.deliver_webhooks(client)  # Paid, CancelPending, PartialCancelled
    assert [a.json()["outcome"] for a in answers] == ["processed"] * 3

    settled = await read(client, order)
    assert (settled["status"], settled["refundedAmount"]) == ("PARTIALLY_REFUNDED", 3_000)
    [listed] = settled["refunds"]
    assert (listed["status"], listed["refundId"]) == (
        "SUCCEEDED",
        accepted.json()["refunds"][0]["refundId"],
    )
    assert listed["settledAt"] is not None
    assert (await refund(client, order, "r-1", amount=3_000)).status_code == 200  # its key


async def test_a_held_refund_portone_fails_is_found_by_the_reconciler_and_shown_failed(
    client: httpx.AsyncClient,
    emulated: EmulatedPortOne,
    services: Services,
    db: asyncpg.Connection,
) -> None:
    order = await emulated.paid_order(client)
    emulated.next_cancellation(order, "REQUESTED")
    assert (await refund(client, order, "r-1")).status_code == 202
    await emulated.deliver_webhooks(client)
    emulated.settle(order, "FAILED")
    assert emulated.webhooks == []  # PortOne sends no webhook for it
    counted = await failed_refunds_counted(client)

    summary = await services.reconciler().run_pass()

    assert (summary.changed, summary.settled) == (0, 1)
    failed = await read(client, order)
    assert (failed["status"], failed["refundedAmount"]) == ("PAID", 0)
    assert [r["status"] for r in failed["refunds"]] == ["FAILED"]
    assert await outbox_types(db, order) == ["order.paid", "order.refund_failed"]
    history = await events(db, order["orderId"])
    [entry] = [e for e in history if e["source"] == "refund" and "FAILED" in (e["detail"] or "")]
    assert entry["detail"].startswith("refund rfd_")
    assert await failed_refunds_counted(client) == counted + 1
    # The old key replays the failure; a new key may try again.
    assert_problem(await refund(client, order, "r-1"), 502, "REFUND_FAILED")
    again = await refund(client, order, "r-2")
    assert again.status_code == 200, again.text
    assert [r["status"] for r in again.json()["refunds"]] == ["FAILED", "SUCCEEDED"]
    assert again.json()["status"] == "REFUNDED"


async def test_a_cancellation_portone_fails_at_once_is_a_recorded_502(
    client: httpx.AsyncClient, emulated: EmulatedPortOne, db: asyncpg.Connection
) -> None:
    order = await emulated.paid_order(client)
    emulated.next_cancellation(order, "FAILED")

    answer = await refund(client, order, "r-1", amount=2_000)

    assert_problem(answer, 502, "REFUND_FAILED")
    listed = (await read(client, order))["refunds"]
    assert [(r["status"], r["amount"]) for r in listed] == [("FAILED", 2_000)]
    assert listed[0]["settledAt"] is not None
    assert await outbox_types(db, order) == ["order.paid", "order.refund_failed"]
    cancels = len(emulated.calls("POST", "/cancel"))
    assert_problem(await refund(client, order, "r-1", amount=2_000), 502, "REFUND_FAILED")
    assert len(emulated.calls("POST", "/cancel")) == cancels  # replayed, not sent again


async def test_a_second_refund_leaves_alone_what_portone_holds(
    client: httpx.AsyncClient, emulated: EmulatedPortOne
) -> None:
    order = await emulated.paid_order(client)
    emulated.next_cancellation(order, "REQUESTED")
    assert (await refund(client, order, "r-1", amount=6_000)).status_code == 202

    too_much = await refund(client, order, "r-2", amount=5_000)
    rest = await refund(client, order, "r-3")

    assert_problem(too_much, 422, "REFUND_EXCEEDS_BALANCE")
    assert rest.status_code == 200, rest.text
    assert [(r["amount"], r["status"]) for r in rest.json()["refunds"]] == [
        (6_000, "REQUESTED"),
        (4_000, "SUCCEEDED"),
    ]


async def test_refunds_whose_answer_never_came_are_settled_from_portone_when_abandoned(
    client: httpx.AsyncClient,
    emulated: EmulatedPortOne,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    never_sent, answer_lost = await emulated.paid_order(client), await emulated.paid_order(client)
    emulated.unavailable.add(f"/payments/{never_sent['paymentId']}/cancel")
    emulated.answer_lost.add(f"/payments/{answer_lost['paymentId']}/cancel")
    for order in (never_sent, answer_lost):
        assert_problem(await refund(client, order, "r-1"), 503, "PORTONE_UNAVAILABLE")
        assert [r["status"] for r in (await read(client, order))["refunds"]] == ["REQUESTED"]
    monkeypatch.setattr(settlement, "ABANDONED_AFTER", timedelta(0))  # nobody retried

    summary = await services.reconciler().run_pass()

    assert summary.settled == 2

    assert [r["status"] for r in (await read(client, never_sent))["refunds"]] == ["FAILED"]
    made = await read(client, answer_lost)
    assert [r["status"] for r in made["refunds"]] == ["SUCCEEDED"]
    assert made["status"] == "REFUNDED"
