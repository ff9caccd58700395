"""Webhooks converge the order on PortOne's truth, whatever the body claims."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import respx

from app.standard_webhooks import decode_secret, sign
from tests.helpers import (
    WEBHOOK_SECRET,
    awaiting_deposit,
    create_order,
    order_row,
    portone_returns,
    post_webhook,
    signed_webhook,
    transitions,
)
from tests.portone_payloads import payment_body


async def delivery(db: asyncpg.Connection, webhook_id: str) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM webhook_deliveries WHERE webhook_id = $1", webhook_id)
    assert row is not None
    return row


async def test_paid_webhook_marks_order_paid_after_refetch(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    route = portone_returns(portone, order["paymentId"])

    response = await post_webhook(client, order["paymentId"], webhook_id="msg_paid")

    assert response.status_code == 200, response.text
    assert response.json() == {"outcome": "processed"}
    assert route.call_count == 1
    assert (await order_row(db, order["orderId"]))["status"] == "PAID"
    stored = await delivery(db, "msg_paid")
    assert stored["status"] == "PROCESSED"
    assert stored["payment_id"] == order["paymentId"]
    assert stored["type"] == "Transaction.Paid"
    assert '"Transaction.Paid"' in stored["body"]
    events = await db.fetch(
        "SELECT source FROM order_history WHERE order_id = $1", order["orderId"]
    )
    assert [e["source"] for e in events] == ["webhook"]


# A webhook only says where to look: the order follows what PortOne shows, whatever the
# webhook's type claims.
@pytest.mark.parametrize(
    ("portone_status", "kind"),
    [("READY", "Transaction.Paid"), ("FAILED", "Transaction.Failed")],
    ids=["claims paid while PortOne says READY", "failed"],
)
async def test_webhook_of_a_payment_portone_shows_unpaid_is_recorded_and_leaves_order_pending(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    portone_status: str,
    kind: str,
) -> None:
    order = await create_order(client)
    portone_returns(portone, order["paymentId"], status=portone_status)

    response = await post_webhook(client, order["paymentId"], kind=kind)

    assert response.status_code == 200
    assert (await order_row(db, order["orderId"]))["status"] == "PENDING"
    events = await db.fetch("SELECT * FROM order_history WHERE order_id = $1", order["orderId"])
    assert [(e["portone_status"], e["to_status"]) for e in events] == [(portone_status, "PENDING")]


async def test_duplicate_deliveries_call_portone_once(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    route = portone_returns(portone, order["paymentId"])
    body, headers = signed_webhook(order["paymentId"], webhook_id="msg_dup")

    first = await client.post("/webhooks/portone", content=body, headers=headers)
    second = await client.post("/webhooks/portone", content=body, headers=headers)

    assert first.json() == {"outcome": "processed"}
    assert second.status_code == 200
    assert second.json() == {"outcome": "duplicate"}
    assert route.call_count == 1
    assert (await delivery(db, "msg_dup"))["attempts"] == 1


async def test_concurrent_duplicate_deliveries_call_portone_once(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    route = portone_returns(portone, order["paymentId"])
    body, headers = signed_webhook(order["paymentId"], webhook_id="msg_race")

    answers = await asyncio.gather(
        *(client.post("/webhooks/portone", content=body, headers=headers) for _ in range(10))
    )

    assert {a.status_code for a in answers} == {200}
    assert sorted(a.json()["outcome"] for a in answers) == ["duplicate"] * 9 + ["processed"]
    assert route.call_count == 1
    assert await transitions(db, order["orderId"]) == [("PENDING", "PAID")]


async def test_webhook_and_completion_racing_make_one_transition(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    portone_returns(portone, order["paymentId"])
    completions = [
        client.post("/payments/complete", json={"paymentId": order["paymentId"]}) for _ in range(10)
    ]
    webhooks = [post_webhook(client, order["paymentId"]) for _ in range(10)]

    answers = await asyncio.gather(*completions, *webhooks)

    assert {a.status_code for a in answers} == {200}
    assert await transitions(db, order["orderId"]) == [("PENDING", "PAID")]


async def test_virtual_account_deposit_arrives_by_webhook(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    issued_at = datetime.now(UTC) - timedelta(hours=3)
    route = await awaiting_deposit(client, portone, order, issued_at=issued_at)

    route.respond(200, json=payment_body(order["paymentId"], status="PAID", virtual_account=True))
    response = await post_webhook(client, order["paymentId"])

    assert response.status_code == 200
    row = await order_row(db, order["orderId"])
    assert row["status"] == "PAID"
    assert row["paid_at"] is not None
    assert await transitions(db, order["orderId"]) == [
        ("PENDING", "AWAITING_DEPOSIT"),
        ("AWAITING_DEPOSIT", "PAID"),
    ]


WEBHOOK_TYPES = {
    "PAID": "Transaction.Paid",
    "PARTIAL_CANCELLED": "Transaction.PartialCancelled",
    "CANCELLED": "Transaction.Cancelled",
}


async def portone_moves(
    client: httpx.AsyncClient,
    route: respx.Route,
    payment_id: str,
    status: str,
    at: datetime,
    **payment: Any,
) -> None:
    """PortOne's payment moves to `status` at `at`, and PortOne's webhook says so."""
    route.respond(
        200, json=payment_body(payment_id, status=status, status_changed_at=at, **payment)
    )
    await post_webhook(client, payment_id, kind=WEBHOOK_TYPES[status])


async def test_partial_then_full_cancellation_by_webhook(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    start = datetime.now(UTC) - timedelta(minutes=10)
    route = portone_returns(portone, order["paymentId"], status_changed_at=start)
    await client.post("/payments/complete", json={"paymentId": order["paymentId"]})

    at = start + timedelta(minutes=1)
    await portone_moves(client, route, order["paymentId"], "PARTIAL_CANCELLED", at, cancelled=3_000)
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["refunded_amount"]) == ("PARTIALLY_REFUNDED", 3_000)

    at = start + timedelta(minutes=2)
    await portone_moves(client, route, order["paymentId"], "CANCELLED", at, cancelled=10_000)
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["refunded_amount"]) == ("REFUNDED", 10_000)


async def test_out_of_order_webhooks_resolve_by_status_changed_at(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    start = datetime.now(UTC) - timedelta(minutes=10)
    route = portone_returns(
        portone, order["paymentId"], status="CANCELLED", cancelled=10_000, status_changed_at=start
    )
    portone_returns(portone, order["paymentId"], status_changed_at=start)
    await client.post("/payments/complete", json={"paymentId": order["paymentId"]})
    at = start + timedelta(minutes=5)
    await portone_moves(client, route, order["paymentId"], "CANCELLED", at, cancelled=10_000)
    assert (await order_row(db, order["orderId"]))["status"] == "REFUNDED"

    # A late, older snapshot (a PAID from before the cancellation) changes nothing.
    await portone_moves(client, route, order["paymentId"], "PAID", start)

    assert (await order_row(db, order["orderId"]))["status"] == "REFUNDED"


async def test_portone_outage_answers_503_and_redelivery_applies_it(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    route = portone.get(f"/payments/{order['paymentId']}").respond(503)
    body, headers = signed_webhook(order["paymentId"], webhook_id="msg_outage")

    failed = await client.post("/webhooks/portone", content=body, headers=headers)

    assert failed.status_code == 503
    assert failed.json()["code"] == "PORTONE_UNAVAILABLE"
    assert "Retry-After" in failed.headers
    stored = await delivery(db, "msg_outage")
    assert stored["status"] == "FAILED"
    assert (await order_row(db, order["orderId"]))["status"] == "PENDING"

    route.respond(200, json=payment_body(order["paymentId"]))
    redelivered = await client.post("/webhooks/portone", content=body, headers=headers)

    assert redelivered.json() == {"outcome": "processed"}
    assert (await order_row(db, order["orderId"]))["status"] == "PAID"
    stored = await delivery(db, "msg_outage")
    assert (stored["status"], stored["attempts"]) == ("PROCESSED", 2)


async def test_legacy_2024_01_01_body_is_processed(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    portone_returns(portone, order["paymentId"])
    body = (f'{{"payment_id": "{order["paymentId"]}", "tx_id": "tx-1", "status": "Paid"}}').encode()
    _, headers = signed_webhook(order["paymentId"], webhook_id="msg_legacy")
    headers["webhook-signature"] = sign(
        decode_secret(WEBHOOK_SECRET), "msg_legacy", int(headers["webhook-timestamp"]), body
    )

    response = await client.post("/webhooks/portone", content=body, headers=headers)

    assert response.json() == {"outcome": "processed"}
    assert (await order_row(db, order["orderId"]))["status"] == "PAID"
