"""`POST /payments/complete` when PortOne fails, answers out of order or about another
payment, and when many browsers complete one payment at once: retryable, never twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import respx

from app.payments.sync import Source
from app.portone.models import Payment
from app.wiring import Services
from tests.helpers import (
    awaiting_deposit,
    complete,
    events,
    order_row,
    portone_cancels,
    portone_returns,
    transitions,
)
from tests.portone_payloads import payment_body
from tests.problem_details import assert_problem


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
    route = await awaiting_deposit(client, portone, order, issued_at=issued_at)
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
