"""`POST /orders/{orderId}/refund`: refunds at PortOne that can never happen twice."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import httpx
import pytest
import respx

from tests.helpers import INTERNAL, create_order, events, order_row, portone_cancels, transitions
from tests.portone_payloads import STORE_ID, payment_body
from tests.problem_details import assert_problem, assert_validation_failed
from tests.refunds.portone_refunds import (
    ACCOUNT,
    PortOnePayment,
    paid_order,
    refund,
    refund_rows,
)


async def test_partial_then_full_refund_sends_what_is_left_each_time(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order, payment = await paid_order(client, portone)

    partial = await refund(client, order["orderId"], "refund-1", amount=3_000)

    assert partial.status_code == 200, partial.text
    assert (partial.json()["status"], partial.json()["refundedAmount"]) == (
        "PARTIALLY_REFUNDED",
        3_000,
    )

    full = await refund(client, order["orderId"], "refund-2", reason="out of stock")

    assert full.status_code == 200, full.text
    assert (full.json()["status"], full.json()["refundedAmount"]) == ("REFUNDED", 10_000)
    first, second = payment.sent
    assert first == {
        "storeId": STORE_ID,
        "reason": "customer asked",
        "currentCancellableAmount": 10_000,
        "amount": 3_000,
    }
    assert second["currentCancellableAmount"] == 7_000
    assert second.get("amount", 7_000) == 7_000
    assert second["reason"] == "out of stock"
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["refunded_amount"]) == ("REFUNDED", 10_000)
    assert [(r["amount"], r["status"]) for r in await refund_rows(db, order["orderId"])] == [
        (3_000, "SUCCEEDED"),
        (7_000, "SUCCEEDED"),
    ]
    assert await transitions(db, order["orderId"]) == [
        ("PENDING", "PAID"),
        ("PAID", "PARTIALLY_REFUNDED"),
        ("PARTIALLY_REFUNDED", "REFUNDED"),
    ]
    sources = [e["source"] for e in await events(db, order["orderId"])]
    assert sources.count("refund") == 2


async def test_same_idempotency_key_twice_cancels_once_and_answers_the_same(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order, payment = await paid_order(client, portone)

    first = await refund(client, order["orderId"], "refund-once", amount=3_000)
    second = await refund(client, order["orderId"], "refund-once", amount=3_000)

    assert first.status_code == second.status_code == 200, second.text
    assert second.json() == first.json()
    assert second.json()["refundedAmount"] == 3_000
    assert payment.cancel.call_count == 1
    assert payment.cancelled == 3_000
    assert len(await refund_rows(db, order["orderId"])) == 1


async def test_same_idempotency_key_racing_itself_cancels_once(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order, payment = await paid_order(client, portone)

    responses = await asyncio.gather(
        *(refund(client, order["orderId"], "refund-race", amount=3_000) for _ in range(10))
    )

    assert 200 in {r.status_code for r in responses}
    for response in responses:
        if response.status_code != 200:
            assert_problem(response, 409, "REFUND_IN_PROGRESS")
    assert payment.cancel.call_count == 1
    assert payment.cancelled == 3_000
    [row] = await refund_rows(db, order["orderId"])
    assert (row["status"], row["amount"]) == ("SUCCEEDED", 3_000)


async def test_full_refunds_racing_under_different_keys_refund_once(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order, payment = await paid_order(client, portone)

    responses = await asyncio.gather(
        *(refund(client, order["orderId"], f"refund-{i}") for i in range(5))
    )

    assert [r.status_code for r in responses].count(200) == 1
    assert payment.cancelled == 10_000
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["refunded_amount"]) == ("REFUNDED", 10_000)
    statuses = [r["status"] for r in await refund_rows(db, order["orderId"])]
    assert statuses.count("SUCCEEDED") == 1


async def test_same_idempotency_key_with_another_body_is_refused_without_a_call(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order, payment = await paid_order(client, portone)
    await refund(client, order["orderId"], "refund-key", amount=3_000)

    response = await refund(client, order["orderId"], "refund-key", amount=4_000)

    assert_problem(response, 409, "IDEMPOTENCY_KEY_REUSED")
    assert payment.cancel.call_count == 1
    assert payment.cancelled == 3_000
    assert len(await refund_rows(db, order["orderId"])) == 1


async def test_pending_order_is_not_refundable_and_portone_is_not_called(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order = await create_order(client)

    response = await refund(client, order["orderId"], "refund-pending")

    assert_problem(response, 409, "ORDER_NOT_REFUNDABLE")
    assert portone.calls.call_count == 0
    assert (await order_row(db, order["orderId"]))["status"] == "PENDING"
    assert await refund_rows(db, order["orderId"]) == []


async def test_rejected_order_is_not_refundable_and_portone_is_not_called(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    payment = PortOnePayment(portone, order["paymentId"], total=100)
    await client.post("/payments/complete", json={"paymentId": order["paymentId"]})
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["compensation_status"]) == ("REJECTED", "DONE")
    calls_before = portone.calls.call_count

    response = await refund(client, order["orderId"], "refund-rejected")

    assert_problem(response, 409, "ORDER_NOT_REFUNDABLE")
    assert portone.calls.call_count == calls_before
    assert payment.cancel.call_count == 1  # the compensation, nothing more
    assert await refund_rows(db, order["orderId"]) == []


@pytest.mark.parametrize(
    ("refunded_first", "amount"),
    [pytest.param(0, 10_001, id="paid"), pytest.param(3_000, 7_001, id="partially-refunded")],
)
async def test_refund_beyond_what_is_left_is_refused_without_a_call(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    refunded_first: int,
    amount: int,
) -> None:
    order, payment = await paid_order(client, portone)
    if refunded_first:
        await refund(client, order["orderId"], "refund-first", amount=refunded_first)
    cancels_before = payment.cancel.call_count

    response = await refund(client, order["orderId"], "refund-too-much", amount=amount)

    assert_problem(response, 422, "REFUND_EXCEEDS_BALANCE")
    assert payment.cancel.call_count == cancels_before
    assert payment.cancelled == refunded_first
    assert (await order_row(db, order["orderId"]))["refunded_amount"] == refunded_first


async def test_refund_without_a_reason_is_a_validation_failure(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order, payment = await paid_order(client, portone)

    response = await client.post(
        f"/orders/{order['orderId']}/refund", json={"amount": 3_000}, headers=INTERNAL
    )

    assert_validation_failed(response, "reason")
    assert payment.cancel.call_count == 0
    assert await refund_rows(db, order["orderId"]) == []


async def test_fully_refunded_order_is_not_refundable_again(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order, payment = await paid_order(client, portone)
    await refund(client, order["orderId"], "refund-all")

    response = await refund(client, order["orderId"], "refund-more")

    assert_problem(response, 409, "ORDER_NOT_REFUNDABLE")
    assert payment.cancel.call_count == 1
    assert payment.cancelled == 10_000


async def test_refund_account_without_a_holder_is_a_validation_failure(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order, payment = await paid_order(client, portone, virtual_account=True)
    account = {"bank": "KOOKMIN", "number": "123456789012"}

    response = await refund(client, order["orderId"], "refund-va", refundAccount=account)

    assert_validation_failed(response, "holderName")
    assert payment.cancel.call_count == 0


async def test_asynchronous_cancellation_is_accepted_and_leaves_the_order_paid_until_settled(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order, payment = await paid_order(client, portone)
    payment.cancellation_status = "REQUESTED"

    response = await refund(client, order["orderId"], "refund-async", amount=3_000)

    assert response.status_code == 202, response.text
    assert (response.json()["status"], response.json()["refundedAmount"]) == ("PAID", 0)
    [listed] = response.json()["refunds"]
    assert (listed["amount"], listed["status"], listed["settledAt"]) == (3_000, "REQUESTED", None)
    assert payment.cancel.call_count == 1
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["refunded_amount"]) == ("PAID", 0)
    [refund_row] = await refund_rows(db, order["orderId"])
    assert (refund_row["status"], refund_row["amount"]) == ("REQUESTED", 3_000)


async def test_nothing_left_to_refund_is_refused_without_a_call(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    """A refund PortOne still holds REQUESTED leaves nothing to refund meanwhile."""
    order, payment = await paid_order(client, portone)
    payment.cancellation_status = "REQUESTED"
    held = await refund(client, order["orderId"], "refund-held")

    again = await refund(client, order["orderId"], "refund-again")

    assert held.status_code == 202, held.text
    assert_problem(again, 422, "REFUND_EXCEEDS_BALANCE")
    assert payment.cancel.call_count == 1
    assert [row["amount"] for row in await refund_rows(db, order["orderId"])] == [10_000]


async def test_virtual_account_refund_passes_the_refund_account_to_portone(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order, payment = await paid_order(client, portone, virtual_account=True)

    response = await refund(client, order["orderId"], "refund-va", refundAccount=ACCOUNT)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "REFUNDED"
    [sent] = payment.sent
    assert sent["refundAccount"] == ACCOUNT
    assert sent["currentCancellableAmount"] == 10_000


async def test_refund_of_an_unknown_order_is_not_found(
    client: httpx.AsyncClient, portone: respx.MockRouter
) -> None:
    response = await refund(client, "ord_nobody", "refund-nobody")

    assert_problem(response, 404, "ORDER_NOT_FOUND")
    assert portone.calls.call_count == 0


async def test_refund_without_the_internal_token_is_unauthorized(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order, payment = await paid_order(client, portone)

    response = await client.post(
        f"/orders/{order['orderId']}/refund", json={"reason": "customer asked"}
    )

    assert_problem(response, 401, "UNAUTHORIZED")
    assert payment.cancel.call_count == 0


async def test_refund_without_an_amount_cancels_everything_that_is_left(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    fetch = portone.get(f"/payments/{order['paymentId']}").respond(
        200, json=payment_body(order["paymentId"])
    )
    await client.post("/payments/complete", json={"paymentId": order["paymentId"]})
    cancel = portone_cancels(portone, order["paymentId"], amount=10_000)
    fetch.respond(200, json=payment_body(order["paymentId"], status="CANCELLED", cancelled=10_000))

    response = await refund(client, order["orderId"], "refund-helper")

    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["refundedAmount"]) == ("REFUNDED", 10_000)
    [call] = cancel.calls
    assert json.loads(call.request.content)["currentCancellableAmount"] == 10_000
    [row] = await refund_rows(db, order["orderId"])
    assert (row["status"], row["amount"]) == ("SUCCEEDED", 10_000)
