"""`POST /orders/{orderId}/refund`: refunds at PortOne that can never happen twice."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import respx

from tests.helpers import INTERNAL, create_order, events, order_row, portone_cancels, transitions
from tests.portone_payloads import STORE_ID, payment_body
from tests.problem_details import assert_problem, assert_validation_failed

ACCOUNT = {"bank": "KOOKMIN", "number": "123456789012", "holderName": "Kim Waffle"}


@dataclass
class PortOnePayment:
    """One payment at a mocked PortOne that cancels the way the real one does.

    A cancel is refused with CANCELLABLE_AMOUNT_CONSISTENCY_BROKEN unless its
    `currentCancellableAmount` is what is left, so a duplicate can never go through.
    """

    portone: respx.MockRouter
    payment_id: str
    total: int = 10_000
    cancelled: int = 0
    virtual_account: bool = False
    cancellation_status: str = "SUCCEEDED"
    unavailable_once: bool = False  # the next cancel meets a 503 and does nothing
    answer_lost_once: bool = False  # the next cancel goes through but its answer times out
    changed_at: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(hours=1))
    fetch: respx.Route = field(init=False)
    cancel: respx.Route = field(init=False)

    def __post_init__(self) -> None:
        self.fetch = self.portone.get(f"/payments/{self.payment_id}").mock(side_effect=self._get)
        self.cancel = self.portone.post(f"/payments/{self.payment_id}/cancel").mock(
            side_effect=self._cancel
        )

    @property
    def status(self) -> str:
        if self.cancelled == 0:
            return "PAID"
        return "CANCELLED" if self.cancelled == self.total else "PARTIAL_CANCELLED"

    @property
    def sent(self) -> list[dict[str, Any]]:
        """The bodies of every cancel PortOne received, in order."""
        return [json.loads(call.request.content) for call in self.cancel.calls]

    def cancel_in_console(self, amount: int) -> None:
        self.cancelled += amount
        self.changed_at += timedelta(minutes=1)

    def _get(self, request: httpx.Request) -> httpx.Response:
        body = payment_body(
            self.payment_id,
            status=self.status,
            total=self.total,
            cancelled=self.cancelled,
            virtual_account=self.virtual_account,
            status_changed_at=self.changed_at,
        )
        return httpx.Response(200, json=body)

    def _cancel(self, request: httpx.Request) -> httpx.Response:
        if self.unavailable_once:
            self.unavailable_once = False
            return httpx.Response(503)
        body = json.loads(request.content)
        left = self.total - self.cancelled
        if left == 0:
            return _error(409, "PAYMENT_ALREADY_CANCELLED")
        if body.get("currentCancellableAmount", left) != left:
            return _error(409, "CANCELLABLE_AMOUNT_CONSISTENCY_BROKEN")
        amount = body.get("amount", left)
        if amount > left:
            return _error(409, "CANCEL_AMOUNT_EXCEEDS_CANCELLABLE_AMOUNT")
        if self.cancellation_status == "SUCCEEDED":
            self.cancel_in_console(amount)
        if self.answer_lost_once:
            self.answer_lost_once = False
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return httpx.Response(200, json={"cancellation": _cancellation(amount, self)})


def _cancellation(amount: int, payment: PortOnePayment) -> dict[str, Any]:
    at = payment.changed_at.isoformat().replace("+00:00", "Z")
    cancellation: dict[str, Any] = {
        "status": payment.cancellation_status,
        "id": f"cancel-{len(payment.cancel.calls)}",
        "totalAmount": amount,
        "taxFreeAmount": 0,
        "vatAmount": 0,
        "reason": "refund",
        "requestedAt": at,
    }
    if payment.cancellation_status == "SUCCEEDED":
        cancellation["cancelledAt"] = at
    return cancellation


def _error(status: int, type_: str) -> httpx.Response:
    return httpx.Response(status, json={"type": type_, "message": f"{type_} (mocked)"})


async def paid_order(
    client: httpx.AsyncClient, portone: respx.MockRouter, *, virtual_account: bool = False
) -> tuple[dict[str, Any], PortOnePayment]:
    order = await create_order(client, amount=10_000)
    payment = PortOnePayment(portone, order["paymentId"], virtual_account=virtual_account)
    response = await client.post("/payments/complete", json={"paymentId": order["paymentId"]})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "PAID"
    return order, payment


async def refund(
    client: httpx.AsyncClient, order_id: str, key: str | None = None, **body: Any
) -> httpx.Response:
    headers = INTERNAL | ({"Idempotency-Key": key} if key else {})
    return await client.post(
        f"/orders/{order_id}/refund", json={"reason": "customer asked", **body}, headers=headers
    )


async def refund_rows(db: asyncpg.Connection, order_id: str) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM refunds WHERE order_id = $1 ORDER BY created_at", order_id)


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


async def test_consistency_error_from_portone_answers_409_with_the_order_resynced(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    fetch = portone.get(f"/payments/{order['paymentId']}").respond(
        200, json=payment_body(order["paymentId"])
    )
    await client.post("/payments/complete", json={"paymentId": order["paymentId"]})
    cancel = portone.post(f"/payments/{order['paymentId']}/cancel").mock(
        return_value=_error(409, "CANCELLABLE_AMOUNT_CONSISTENCY_BROKEN")
    )
    fetch.respond(200, json=payment_body(order["paymentId"], status="CANCELLED", cancelled=10_000))

    response = await refund(client, order["orderId"], "refund-late")

    assert response.status_code == 409, response.text
    assert cancel.call_count == 1
    fetched = await client.get(f"/orders/{order['orderId']}", headers=INTERNAL)
    assert (fetched.json()["status"], fetched.json()["refundedAmount"]) == ("REFUNDED", 10_000)


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
