"""Refunds when PortOne refuses, moves the balance, or loses its answer: the order re-read,
the refund recorded as PortOne holds it, and a retry that never refunds twice."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import httpx
import pytest
import respx

from app.refunds import service
from tests.helpers import INTERNAL, create_order, order_row, transitions
from tests.portone_payloads import payment_body
from tests.problem_details import assert_problem
from tests.refunds.portone_refunds import (
    paid_order,
    portone_error,
    refund,
    refund_rows,
)


@pytest.fixture
def past_portones_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """This mocked PortOne keeps no Idempotency-Keys, as PortOne after its window: a
    retry's lost answer is then found among the payment's cancellations."""
    monkeypatch.setattr(service, "IDEMPOTENCY_WINDOW", timedelta(0))


async def test_refund_racing_a_console_cancellation_is_a_conflict_and_resyncs_the_order(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order, payment = await paid_order(client, portone)
    payment.cancel_in_console(6_000)

    response = await refund(client, order["orderId"], "refund-late", amount=3_000)

    assert_problem(response, 409, "REFUND_CONFLICT")
    [sent] = payment.sent
    assert sent["currentCancellableAmount"] == 10_000
    assert payment.cancelled == 6_000
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["refunded_amount"]) == ("PARTIALLY_REFUNDED", 6_000)
    [refund_row] = await refund_rows(db, order["orderId"])
    assert refund_row["status"] == "FAILED"
    assert await transitions(db, order["orderId"]) == [
        ("PENDING", "PAID"),
        ("PAID", "PARTIALLY_REFUNDED"),
    ]


async def test_refund_after_a_console_cancellation_of_everything_is_not_refundable(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order, payment = await paid_order(client, portone)
    payment.cancel_in_console(10_000)

    response = await refund(client, order["orderId"], "refund-late", amount=3_000)

    assert_problem(response, 409, "ORDER_NOT_REFUNDABLE")
    assert payment.cancelled == 10_000
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["refunded_amount"]) == ("REFUNDED", 10_000)
    [refund_row] = await refund_rows(db, order["orderId"])
    assert refund_row["status"] == "FAILED"


async def test_refused_refund_is_replayed_for_its_key_without_calling_portone_again(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order, payment = await paid_order(client, portone)
    payment.cancel_in_console(2_000)
    first = await refund(client, order["orderId"], "refund-refused", amount=3_000)

    second = await refund(client, order["orderId"], "refund-refused", amount=3_000)

    assert_problem(first, 409, "REFUND_CONFLICT")
    assert_problem(second, 409, "REFUND_CONFLICT")
    assert payment.cancel.call_count == 1
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["refunded_amount"]) == ("PARTIALLY_REFUNDED", 2_000)

    with_a_new_key = await refund(client, order["orderId"], "refund-again", amount=3_000)

    assert with_a_new_key.status_code == 200, with_a_new_key.text
    assert payment.sent[-1]["currentCancellableAmount"] == 8_000
    assert with_a_new_key.json()["refundedAmount"] == 5_000


async def test_consistency_error_from_portone_answers_409_with_the_order_resynced(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    fetch = portone.get(f"/payments/{order['paymentId']}").respond(
        200, json=payment_body(order["paymentId"])
    )
    await client.post("/payments/complete", json={"paymentId": order["paymentId"]})
    cancel = portone.post(f"/payments/{order['paymentId']}/cancel").mock(
        return_value=portone_error(409, "CANCELLABLE_AMOUNT_CONSISTENCY_BROKEN")
    )
    fetch.respond(200, json=payment_body(order["paymentId"], status="CANCELLED", cancelled=10_000))

    response = await refund(client, order["orderId"], "refund-late")

    assert response.status_code == 409, response.text
    assert cancel.call_count == 1
    fetched = await client.get(f"/orders/{order['orderId']}", headers=INTERNAL)
    assert (fetched.json()["status"], fetched.json()["refundedAmount"]) == ("REFUNDED", 10_000)


async def test_portone_outage_on_cancel_is_retryable_with_the_same_cancellable_amount(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order, payment = await paid_order(client, portone)
    payment.unavailable_once = True

    failed = await refund(client, order["orderId"], "refund-retry", amount=3_000)

    assert_problem(failed, 503, "PORTONE_UNAVAILABLE")
    assert int(failed.headers["Retry-After"]) > 0
    [row] = await refund_rows(db, order["orderId"])
    assert row["status"] == "RETRYABLE"
    assert (await order_row(db, order["orderId"]))["status"] == "PAID"

    retried = await refund(client, order["orderId"], "refund-retry", amount=3_000)

    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["refundedAmount"]) == (
        "PARTIALLY_REFUNDED",
        3_000,
    )
    assert [body["currentCancellableAmount"] for body in payment.sent] == [10_000, 10_000]
    assert payment.cancelled == 3_000
    [row] = await refund_rows(db, order["orderId"])
    assert (row["status"], row["attempts"]) == ("SUCCEEDED", 2)


@pytest.mark.usefixtures("past_portones_window")
async def test_retry_after_a_lost_answer_does_not_refund_twice(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order, payment = await paid_order(client, portone)
    payment.answer_lost_once = True

    failed = await refund(client, order["orderId"], "refund-lost", amount=3_000)
    retried = await refund(client, order["orderId"], "refund-lost", amount=3_000)

    assert_problem(failed, 503, "PORTONE_UNAVAILABLE")
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["refundedAmount"]) == (
        "PARTIALLY_REFUNDED",
        3_000,
    )
    assert payment.cancel.call_count == 2
    assert payment.cancelled == 3_000
    [row] = await refund_rows(db, order["orderId"])
    assert row["status"] == "SUCCEEDED"


@pytest.mark.usefixtures("past_portones_window")
async def test_retry_of_a_full_refund_whose_answer_was_lost_is_the_refund_made(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    """PortOne refuses the retry because the payment is now cancelled: by this refund."""
    order, payment = await paid_order(client, portone)
    payment.answer_lost_once = True

    failed = await refund(client, order["orderId"], "refund-all-lost")
    retried = await refund(client, order["orderId"], "refund-all-lost")

    assert_problem(failed, 503, "PORTONE_UNAVAILABLE")
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["refundedAmount"]) == ("REFUNDED", 10_000)
    assert payment.cancel.call_count == 2
    [row] = await refund_rows(db, order["orderId"])
    assert (row["status"], row["amount"]) == ("SUCCEEDED", 10_000)


async def test_retry_is_not_credited_with_another_refunds_cancellation(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    """Found by scripts/stress.py: the balance had moved by the same amount, but through
    another refund, and the retry was recorded as made."""
    order, payment = await paid_order(client, portone)
    payment.unavailable_once = True
    failed = await refund(client, order["orderId"], "refund-b", amount=5_000)
    made = await refund(client, order["orderId"], "refund-a", amount=5_000)

    retried = await refund(client, order["orderId"], "refund-b", amount=5_000)

    assert_problem(failed, 503, "PORTONE_UNAVAILABLE")
    assert made.status_code == 200, made.text
    assert_problem(retried, 409, "REFUND_CONFLICT")
    assert payment.cancelled == 5_000
    statuses = {
        row["idempotency_key"]: row["status"] for row in await refund_rows(db, order["orderId"])
    }
    assert statuses == {"refund-a": "SUCCEEDED", "refund-b": "FAILED"}
