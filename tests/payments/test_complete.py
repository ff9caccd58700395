"""`POST /payments/complete` through the HTTP API, against real Postgres and mocked PortOne."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import respx

from app.config import Settings
from app.payments.sync import Source
from app.portone.models import Payment
from app.services import Services
from tests.conftest import make_settings
from tests.helpers import (
    create_order,
    events,
    order_row,
    portone_cancels,
    portone_returns,
    transitions,
)
from tests.portone_payloads import STORE_ID, payment_body


async def complete(client: httpx.AsyncClient, payment_id: str) -> httpx.Response:
    return await client.post("/payments/complete", json={"paymentId": payment_id})


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["title"]
    assert problem["detail"]
    return problem


@pytest.fixture
async def order(client: httpx.AsyncClient) -> dict[str, Any]:
    return await create_order(client, amount=10_000)


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
    assert body["rejectionReason"] is None
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
        f"/orders/{order['orderId']}/events",
        headers={"Authorization": "Bearer internal-test-token"},
    )
    assert listed.status_code == 200
    [api_event] = listed.json()["events"]
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
    fetched = await client.get(
        f"/orders/{order['orderId']}", headers={"Authorization": "Bearer internal-test-token"}
    )
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
    portone_returns(
        portone, order["paymentId"], status="VIRTUAL_ACCOUNT_ISSUED", virtual_account=True
    )

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
    portone_returns(
        portone, order["paymentId"], status="VIRTUAL_ACCOUNT_ISSUED", virtual_account=True
    )
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


@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_credentials_are_a_bad_gateway_and_order_stays_pending(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
    status: int,
) -> None:
    portone.get(f"/payments/{order['paymentId']}").respond(
        status, json={"type": "UNAUTHORIZED", "message": "invalid secret"}
    )

    response = await complete(client, order["paymentId"])

    assert_problem(response, 502, "PORTONE_REJECTED_CREDENTIALS")
    assert (await order_row(db, order["orderId"]))["status"] == "PENDING"
    assert await events(db, order["orderId"]) == []


OUTAGES = [
    pytest.param(httpx.Response(500), id="500"),
    pytest.param(httpx.Response(502, text="Bad Gateway"), id="502"),
    pytest.param(httpx.Response(429), id="429"),
    pytest.param(httpx.ReadTimeout, id="read-timeout"),
    pytest.param(httpx.ConnectError, id="connect-error"),
    pytest.param(
        httpx.Response(200, text="<html>maintenance</html>", headers={"content-type": "text/html"}),
        id="non-json-200",
    ),
]


@pytest.mark.parametrize("outage", OUTAGES)
async def test_portone_outage_is_retryable_and_a_later_retry_pays(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
    outage: httpx.Response | type[Exception],
) -> None:
    route = portone.get(f"/payments/{order['paymentId']}")
    if isinstance(outage, httpx.Response):
        route.mock(return_value=outage)
    else:
        route.mock(side_effect=outage)

    response = await complete(client, order["paymentId"])

    assert_problem(response, 503, "PORTONE_UNAVAILABLE")
    assert int(response.headers["Retry-After"]) > 0
    row = await order_row(db, order["orderId"])
    assert row["status"] == "PENDING"
    assert row["rejection_reason"] is None
    assert row["compensation_status"] is None
    assert await events(db, order["orderId"]) == []

    route.mock(return_value=httpx.Response(200, json=payment_body(order["paymentId"])))
    retried = await complete(client, order["paymentId"])

    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "PAID"
    assert (await order_row(db, order["orderId"]))["status"] == "PAID"
    assert await transitions(db, order["orderId"]) == [("PENDING", "PAID")]


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


async def test_concurrent_completions_make_exactly_one_transition(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
) -> None:
    portone_returns(portone, order["paymentId"])

    responses = await asyncio.gather(*(complete(client, order["paymentId"]) for _ in range(20)))

    assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses]
    assert {r.json()["status"] for r in responses} == {"PAID"}
    changes = await db.fetchval(
        "SELECT count(*) FROM order_history WHERE order_id = $1 AND from_status <> to_status",
        order["orderId"],
    )
    assert changes == 1
    assert await transitions(db, order["orderId"]) == [("PENDING", "PAID")]
    assert (await order_row(db, order["orderId"]))["status"] == "PAID"


async def test_concurrent_completions_of_a_tampered_payment_reject_once(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
) -> None:
    portone_returns(portone, order["paymentId"], total=100)
    cancel = portone_cancels(portone, order["paymentId"], amount=100)

    responses = await asyncio.gather(*(complete(client, order["paymentId"]) for _ in range(20)))

    for response in responses:
        assert assert_problem(response, 409, "PAYMENT_REJECTED")["reason"] == "AMOUNT_MISMATCH"
    assert await transitions(db, order["orderId"]) == [("PENDING", "REJECTED")]
    assert (await order_row(db, order["orderId"]))["compensation_status"] == "DONE"
    assert cancel.call_count == 1


async def test_older_snapshot_after_a_newer_cancellation_is_ignored(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    services: Services,
    order: dict[str, Any],
) -> None:
    cancelled_at = datetime.now(UTC)
    portone_returns(portone, order["paymentId"], status="CANCELLED", status_changed_at=cancelled_at)
    await complete(client, order["paymentId"])
    older = Payment.model_validate(
        payment_body(
            order["paymentId"], status="PAID", status_changed_at=cancelled_at - timedelta(minutes=1)
        )
    )

    observation = await services.sync.apply(order["paymentId"], older, Source.WEBHOOK)

    assert observation.order.status == "CANCELLED"
    assert not observation.changed
    row = await order_row(db, order["orderId"])
    assert row["status"] == "CANCELLED"
    assert row["paid_at"] is None
    assert row["portone_status"] == "CANCELLED"
    assert row["status_changed_at"] == cancelled_at
    assert await transitions(db, order["orderId"]) == [("PENDING", "CANCELLED")]
    recorded = await events(db, order["orderId"])
    assert len(recorded) == 2
    assert (recorded[-1]["source"], recorded[-1]["portone_status"]) == ("webhook", "PAID")
    assert (recorded[-1]["from_status"], recorded[-1]["to_status"]) == ("CANCELLED", "CANCELLED")


@pytest.mark.usefixtures("later_than_reuse")
async def test_older_paid_snapshot_seen_by_completion_after_newer_cancellation_is_ignored(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
) -> None:
    issued_at = datetime.now(UTC) - timedelta(minutes=10)
    route = portone_returns(
        portone,
        order["paymentId"],
        status="VIRTUAL_ACCOUNT_ISSUED",
        virtual_account=True,
        status_changed_at=issued_at,
    )
    await complete(client, order["paymentId"])
    # A lagging replica of PortOne answers with a snapshot older than the one applied.
    route.respond(
        200,
        json=payment_body(
            order["paymentId"], status="PAID", status_changed_at=issued_at - timedelta(minutes=1)
        ),
    )

    response = await complete(client, order["paymentId"])

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "AWAITING_DEPOSIT"
    assert (await order_row(db, order["orderId"]))["status"] == "AWAITING_DEPOSIT"
    assert await transitions(db, order["orderId"]) == [("PENDING", "AWAITING_DEPOSIT")]
    assert len(await events(db, order["orderId"])) == 2


async def test_answer_about_another_payment_is_unavailable_and_order_untouched(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
) -> None:
    before = await order_row(db, order["orderId"])
    portone.get(f"/payments/{order['paymentId']}").respond(
        200, json=payment_body("pay_someone_else", total=100)
    )

    response = await complete(client, order["paymentId"])

    assert_problem(response, 503, "PORTONE_UNAVAILABLE")
    assert "Retry-After" in response.headers
    assert await order_row(db, order["orderId"]) == before
    assert await events(db, order["orderId"]) == []


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
