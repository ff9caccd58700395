"""`POST /payments/complete` through the HTTP API, against real Postgres and mocked PortOne."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import respx

from app.config import Settings
from tests.helpers import (
    INTERNAL,
    account_issued,
    complete,
    events,
    make_settings,
    order_row,
    portone_cancels,
    portone_returns,
    transitions,
)
from tests.portone_payloads import STORE_ID, payment_body
from tests.problem_details import assert_problem


async def test_paid_payment_marks_order_paid_and_records_the_event(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
) -> None:
    route = portone_returns(portone, order["paymentId"])

    response = await complete(client, order["paymentId"])

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "PAID"
    assert body["orderId"] == order["orderId"]
    assert body["paidAt"] is not None
    assert route.call_count == 1
    row = await order_row(db, order["orderId"])
    assert row["status"] == "PAID"
    assert row["paid_at"] is not None
    assert row["compensation_status"] is None
    [event] = await events(db, order["orderId"])
    assert (event["source"], event["from_status"], event["to_status"]) == (
        "complete",
        "PENDING",
        "PAID",
    )
    assert event["portone_status"] == "PAID"
    listed = await client.get(
        f"/orders/{order['orderId']}/history",
        headers=INTERNAL,
    )
    assert listed.status_code == 200
    [api_event] = listed.json()["history"]
    assert api_event["source"] == "complete"
    assert api_event["fromStatus"] == "PENDING"
    assert api_event["toStatus"] == "PAID"
    assert api_event["portoneStatus"] == "PAID"


async def test_discounted_payment_is_paid(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
) -> None:
    portone_returns(portone, order["paymentId"], total=10_000, paid=8_000)

    response = await complete(client, order["paymentId"])

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "PAID"
    assert (await order_row(db, order["orderId"]))["status"] == "PAID"


@pytest.mark.parametrize(
    ("tampered", "reason"),
    [
        pytest.param({"store_id": "store-of-someone-else"}, "STORE_MISMATCH", id="store"),
        pytest.param({"currency": "USD"}, "CURRENCY_MISMATCH", id="currency"),
        pytest.param({"total": 100}, "AMOUNT_MISMATCH", id="amount"),
        pytest.param({"channel_type": "TEST"}, "TEST_CHANNEL", id="test-channel"),
    ],
)
async def test_payment_failing_a_check_is_rejected_and_cancelled(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
    tampered: dict[str, Any],
    reason: str,
) -> None:
    portone_returns(portone, order["paymentId"], **tampered)
    cancel = portone_cancels(portone, order["paymentId"])

    response = await complete(client, order["paymentId"])

    problem = assert_problem(response, 409, "PAYMENT_REJECTED")
    assert problem["reason"] == reason
    row = await order_row(db, order["orderId"])
    assert row["status"] == "REJECTED"
    assert row["rejection_reason"] == reason
    assert row["compensation_status"] == "DONE"
    assert cancel.call_count == 1
    sent = json.loads(cancel.calls.last.request.content)
    expected_cancellable = tampered.get("total", 10_000)
    assert sent["currentCancellableAmount"] == expected_cancellable
    assert sent["storeId"] == STORE_ID
    assert reason in sent["reason"]
    assert row["paid_at"] is None
    assert await transitions(db, order["orderId"]) == [("PENDING", "REJECTED")]
    fetched = await client.get(f"/orders/{order['orderId']}", headers=INTERNAL)
    assert fetched.json()["status"] == "REJECTED"
    assert fetched.json()["rejectionReason"] == reason


async def test_rejected_order_completed_again_is_still_rejected_without_calling_portone(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
) -> None:
    route = portone_returns(portone, order["paymentId"], total=100)
    portone_cancels(portone, order["paymentId"], amount=100)
    await complete(client, order["paymentId"])

    response = await complete(client, order["paymentId"])

    assert assert_problem(response, 409, "PAYMENT_REJECTED")["reason"] == "AMOUNT_MISMATCH"
    assert route.call_count == 1
    assert await transitions(db, order["orderId"]) == [("PENDING", "REJECTED")]


class TestWhenTestPaymentsAreAccepted:
    @pytest.fixture
    def settings(self, database_url: str) -> Settings:
        return make_settings(database_url, portone_accept_test_payments=True)

    async def test_payment_on_a_test_channel_is_paid(
        self,
        client: httpx.AsyncClient,
        portone: respx.MockRouter,
        db: asyncpg.Connection,
        order: dict[str, Any],
    ) -> None:
        portone_returns(portone, order["paymentId"], channel_type="TEST")

        response = await complete(client, order["paymentId"])

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "PAID"
        row = await order_row(db, order["orderId"])
        assert row["status"] == "PAID"
        assert row["compensation_status"] is None


async def test_issued_virtual_account_awaits_the_deposit(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
) -> None:
    account_issued(portone, order["paymentId"])

    response = await complete(client, order["paymentId"])

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "AWAITING_DEPOSIT"
    assert body["paidAt"] is None
    account = body["virtualAccount"]
    assert set(account) == {"bank", "accountNumber", "remitteeName", "expiresAt"}
    assert account["bank"] == "SHINHAN"
    assert account["accountNumber"] == "56211234567890"
    assert account["remitteeName"] == "Waffle Shop"
    assert datetime.fromisoformat(account["expiresAt"]) == datetime(2026, 12, 1, tzinfo=UTC)
    row = await order_row(db, order["orderId"])
    assert row["status"] == "AWAITING_DEPOSIT"
    assert row["va_account_number"] == "56211234567890"
    assert await transitions(db, order["orderId"]) == [("PENDING", "AWAITING_DEPOSIT")]


async def test_awaiting_deposit_completed_again_gives_the_same_answer(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
) -> None:
    account_issued(portone, order["paymentId"])
    first = await complete(client, order["paymentId"])

    second = await complete(client, order["paymentId"])

    assert second.status_code == 200, second.text
    assert second.json()["status"] == "AWAITING_DEPOSIT"
    assert second.json()["virtualAccount"] == first.json()["virtualAccount"]
    assert await transitions(db, order["orderId"]) == [("PENDING", "AWAITING_DEPOSIT")]


@pytest.mark.parametrize("portone_status", ["READY", "PAY_PENDING"])
async def test_unfinished_payment_is_not_paid_and_order_stays_pending(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
    portone_status: str,
) -> None:
    portone_returns(portone, order["paymentId"], status=portone_status)

    response = await complete(client, order["paymentId"])

    problem = assert_problem(response, 409, "PAYMENT_NOT_PAID")
    assert problem["portoneStatus"] == portone_status
    assert "failureReason" not in problem or problem["failureReason"] is None
    assert (await order_row(db, order["orderId"]))["status"] == "PENDING"
    [event] = await events(db, order["orderId"])
    assert (event["from_status"], event["to_status"]) == ("PENDING", "PENDING")
    assert event["portone_status"] == portone_status


async def test_failed_payment_is_not_paid_with_its_reason_and_order_stays_pending(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
) -> None:
    portone_returns(portone, order["paymentId"], status="FAILED")

    response = await complete(client, order["paymentId"])

    problem = assert_problem(response, 409, "PAYMENT_NOT_PAID")
    assert problem["portoneStatus"] == "FAILED"
    assert problem["failureReason"] == "카드 한도 초과"
    assert (await order_row(db, order["orderId"]))["status"] == "PENDING"
    assert await transitions(db, order["orderId"]) == []


@pytest.mark.usefixtures("later_than_reuse")
async def test_failed_attempt_can_be_retried_with_the_same_payment_id(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
) -> None:
    failed_at = datetime.now(UTC) - timedelta(minutes=1)
    route = portone_returns(
        portone, order["paymentId"], status="FAILED", status_changed_at=failed_at
    )
    await complete(client, order["paymentId"])
    route.respond(200, json=payment_body(order["paymentId"]))

    response = await complete(client, order["paymentId"])

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "PAID"
    assert await transitions(db, order["orderId"]) == [("PENDING", "PAID")]


async def test_cancelled_payment_is_not_paid_and_cancels_the_order(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
) -> None:
    portone_returns(portone, order["paymentId"], status="CANCELLED")

    response = await complete(client, order["paymentId"])

    problem = assert_problem(response, 409, "PAYMENT_NOT_PAID")
    assert problem["portoneStatus"] == "CANCELLED"
    assert (await order_row(db, order["orderId"]))["status"] == "CANCELLED"
    assert await transitions(db, order["orderId"]) == [("PENDING", "CANCELLED")]


async def test_payment_unknown_to_portone_is_not_paid_with_null_status(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
) -> None:
    portone.get(f"/payments/{order['paymentId']}").respond(
        404, json={"type": "PAYMENT_NOT_FOUND", "message": "결제 건이 존재하지 않습니다."}
    )

    response = await complete(client, order["paymentId"])

    problem = assert_problem(response, 409, "PAYMENT_NOT_PAID")
    assert "portoneStatus" in problem
    assert problem["portoneStatus"] is None
    assert (await order_row(db, order["orderId"]))["status"] == "PENDING"


async def test_unknown_payment_id_is_order_not_found_without_calling_portone(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    route = portone_returns(portone, "pay_nobody_ordered_this")
    anything = portone.route()

    response = await complete(client, "pay_nobody_ordered_this")

    assert_problem(response, 404, "ORDER_NOT_FOUND")
    assert route.call_count == 0
    assert anything.call_count == 0
    assert portone.calls.call_count == 0
    assert await db.fetchval("SELECT count(*) FROM order_history") == 0


async def test_paid_order_completed_again_answers_without_calling_portone(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
) -> None:
    route = portone_returns(portone, order["paymentId"])
    first = await complete(client, order["paymentId"])

    second = await complete(client, order["paymentId"])

    assert second.status_code == 200, second.text
    assert second.json()["status"] == "PAID"
    assert second.json()["paidAt"] == first.json()["paidAt"]
    assert route.call_count == 1
    assert await transitions(db, order["orderId"]) == [("PENDING", "PAID")]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="missing"),
        pytest.param({"paymentId": ""}, id="empty"),
        pytest.param({"paymentId": "p" * 201}, id="too-long"),
        pytest.param({"paymentId": 12345}, id="not-a-string"),
    ],
)
async def test_malformed_body_is_a_validation_failure_without_calling_portone(
    client: httpx.AsyncClient, portone: respx.MockRouter, body: dict[str, Any]
) -> None:
    response = await client.post("/payments/complete", json=body)

    problem = assert_problem(response, 422, "VALIDATION_FAILED")
    assert problem["errors"]
    assert portone.calls.call_count == 0


async def test_extra_fields_from_the_browser_are_ignored(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    order: dict[str, Any],
) -> None:
    portone_returns(portone, order["paymentId"])

    response = await client.post(
        "/payments/complete",
        json={"paymentId": order["paymentId"], "txId": "tx-1", "amount": 1, "code": None},
    )

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "PAID"
