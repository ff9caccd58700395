"""A payment that fails verification is undone at PortOne exactly once, or left owed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import respx
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from app.wiring import Services
from tests.helpers import (
    INTERNAL,
    account_issued,
    after_backoff,
    complete,
    create_order,
    events,
    make_settings,
    order_row,
    portone_lists,
    portone_returns,
    post_webhook,
    transitions,
)
from tests.portone_payloads import STORE_ID, payment_body
from tests.problem_details import assert_problem

TAMPERED = 100


def cancelled(amount: int) -> httpx.Response:
    """PortOne's answer to a cancel that went through at once."""
    cancellation = {
        "status": "SUCCEEDED",
        "id": "cancel-compensation",
        "totalAmount": amount,
        "taxFreeAmount": 0,
        "vatAmount": 0,
        "reason": "payment failed verification",
        "requestedAt": "2026-11-27T00:00:00Z",
        "cancelledAt": "2026-11-27T00:00:00Z",
    }
    return httpx.Response(200, json={"cancellation": cancellation})


def portone_error(status: int, type_: str) -> httpx.Response:
    return httpx.Response(status, json={"type": type_, "message": f"{type_} (mocked)"})


def sent(route: respx.Route) -> list[dict[str, Any]]:
    """The JSON bodies PortOne received on `route`, in order."""
    return [json.loads(call.request.content) for call in route.calls]


async def compensation_events(db: asyncpg.Connection, order_id: str) -> list[asyncpg.Record]:
    return [e for e in await events(db, order_id) if e["source"] == "compensation"]


async def test_thirty_racing_completions_and_webhooks_cancel_a_tampered_payment_once(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
) -> None:
    payment_id = order["paymentId"]

    async def slow_tampered_payment(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)  # let the racers pile up between fetch and apply
        return httpx.Response(200, json=payment_body(payment_id, total=TAMPERED))

    portone.get(f"/payments/{payment_id}").mock(side_effect=slow_tampered_payment)
    cancel = portone.post(f"/payments/{payment_id}/cancel").mock(return_value=cancelled(TAMPERED))

    calls = [
        complete(client, payment_id) if i % 2 else post_webhook(client, payment_id)
        for i in range(30)
    ]
    responses = await asyncio.gather(*calls)

    for i, response in enumerate(responses):
        if i % 2:
            problem = assert_problem(response, 409, "PAYMENT_REJECTED")
            assert problem["reason"] == "AMOUNT_MISMATCH"
        else:
            assert response.status_code == 200, response.text
    assert cancel.call_count == 1
    [body] = sent(cancel)
    assert body["currentCancellableAmount"] == TAMPERED
    assert body["storeId"] == STORE_ID
    assert "AMOUNT_MISMATCH" in body["reason"]
    row = await order_row(db, order["orderId"])
    assert row["status"] == "REJECTED"
    assert row["rejection_reason"] == "AMOUNT_MISMATCH"
    assert row["compensation_status"] == "DONE"
    assert row["paid_at"] is None
    assert await transitions(db, order["orderId"]) == [("PENDING", "REJECTED")]
    [rejection] = [
        e for e in await events(db, order["orderId"]) if e["from_status"] != e["to_status"]
    ]
    assert rejection["source"] in {"complete", "webhook"}
    assert rejection["portone_status"] == "PAID"
    [compensation] = await compensation_events(db, order["orderId"])
    assert compensation["to_status"] == "REJECTED"
    assert f"cancellation of {TAMPERED} KRW SUCCEEDED" in compensation["detail"]
    listed = await client.get(
        f"/orders/{order['orderId']}/history",
        headers=INTERNAL,
    )
    sources = [e["source"] for e in listed.json()["history"]]
    assert sources.count("compensation") == 1
    assert sources.index("compensation") > 0


@pytest.fixture
async def second_replica(settings: Settings, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Another process of the service, sharing the database."""
    replica = create_app(settings)
    async with replica.router.lifespan_context(replica):
        transport = httpx.ASGITransport(app=replica)
        async with httpx.AsyncClient(transport=transport, base_url="http://replica.test") as client:
            yield client


async def test_two_replicas_racing_on_a_tampered_payment_cancel_it_once(
    client: httpx.AsyncClient,
    second_replica: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
) -> None:
    payment_id = order["paymentId"]
    portone_returns(portone, payment_id, total=TAMPERED)
    cancel = portone.post(f"/payments/{payment_id}/cancel").mock(return_value=cancelled(TAMPERED))

    responses = await asyncio.gather(
        *(complete(replica, payment_id) for replica in [client, second_replica] * 5),
        *(post_webhook(replica, payment_id) for replica in [client, second_replica] * 5),
    )

    assert {r.status_code for r in responses} == {200, 409}
    assert cancel.call_count == 1
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["compensation_status"]) == ("REJECTED", "DONE")
    assert await transitions(db, order["orderId"]) == [("PENDING", "REJECTED")]
    assert len(await compensation_events(db, order["orderId"])) == 1


async def test_cancel_that_timed_out_stays_owed_and_the_reconciler_finishes_it(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    services: Services,
    order: dict[str, Any],
) -> None:
    payment_id = order["paymentId"]
    portone_returns(portone, payment_id, total=TAMPERED)
    cancel = portone.post(f"/payments/{payment_id}/cancel").mock(
        side_effect=[httpx.ReadTimeout, cancelled(TAMPERED)]
    )

    response = await complete(client, payment_id)

    assert assert_problem(response, 409, "PAYMENT_REJECTED")["reason"] == "AMOUNT_MISMATCH"
    assert cancel.call_count == 1
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["compensation_status"]) == ("REJECTED", "OWED")
    [attempt] = await compensation_events(db, order["orderId"])
    assert "failed" in attempt["detail"]

    portone_lists(portone)
    summary = await services.reconciler().run_pass()  # the very next pass tries again

    assert summary.compensated == 1
    assert cancel.call_count == 2
    assert [body["currentCancellableAmount"] for body in sent(cancel)] == [TAMPERED, TAMPERED]
    # The first answer was lost: the retry asks PortOne for the same cancellation.
    lost, retried = (call.request.headers["idempotency-key"] for call in cancel.calls)
    assert lost == retried == f'"compensation-{payment_id}-0"'
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["compensation_status"]) == ("REJECTED", "DONE")
    assert row["compensation_lease_until"] is None
    first, second = await compensation_events(db, order["orderId"])
    assert "failed" in first["detail"]
    assert f"cancellation of {TAMPERED} KRW SUCCEEDED" in second["detail"]
    assert await transitions(db, order["orderId"]) == [("PENDING", "REJECTED")]

    again = await services.reconciler().run_pass()

    assert again.compensated == 0
    assert cancel.call_count == 2


async def test_cancel_whose_answer_was_lost_is_not_repeated_once_portone_shows_it_cancelled(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    services: Services,
    order: dict[str, Any],
) -> None:
    payment_id = order["paymentId"]
    fetch = portone_returns(portone, payment_id, total=TAMPERED)
    cancel = portone.post(f"/payments/{payment_id}/cancel").mock(side_effect=httpx.ReadTimeout)
    await complete(client, payment_id)
    assert (await order_row(db, order["orderId"]))["compensation_status"] == "OWED"
    # The timed-out cancel did go through at PortOne.
    fetch.respond(
        200,
        json=payment_body(payment_id, status="CANCELLED", total=TAMPERED, cancelled=TAMPERED),
    )
    portone_lists(portone)
    await after_backoff(db, order["orderId"])

    await services.reconciler().run_pass()

    assert cancel.call_count == 1
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["compensation_status"]) == ("REJECTED", "DONE")


async def test_payment_already_cancelled_at_portone_counts_as_compensated(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    services: Services,
    order: dict[str, Any],
) -> None:
    payment_id = order["paymentId"]
    portone_returns(portone, payment_id, total=TAMPERED)
    cancel = portone.post(f"/payments/{payment_id}/cancel").mock(
        return_value=portone_error(409, "PAYMENT_ALREADY_CANCELLED")
    )

    response = await complete(client, payment_id)

    assert_problem(response, 409, "PAYMENT_REJECTED")
    assert cancel.call_count == 1
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["compensation_status"]) == ("REJECTED", "DONE")
    [done] = await compensation_events(db, order["orderId"])
    assert "already cancelled" in done["detail"]

    portone_lists(portone)
    await services.reconciler().run_pass()

    assert cancel.call_count == 1


async def test_cancel_refused_for_another_reason_stays_owed(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
) -> None:
    payment_id = order["paymentId"]
    portone_returns(portone, payment_id, total=TAMPERED)
    portone.post(f"/payments/{payment_id}/cancel").mock(
        return_value=portone_error(502, "PG_PROVIDER")
    )

    response = await complete(client, payment_id)

    assert_problem(response, 409, "PAYMENT_REJECTED")
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["compensation_status"]) == ("REJECTED", "OWED")
    [attempt] = await compensation_events(db, order["orderId"])
    assert "failed" in attempt["detail"]


async def test_rejected_virtual_account_is_closed_instead_of_cancelled(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    order: dict[str, Any],
) -> None:
    payment_id = order["paymentId"]
    account_issued(
        portone,
        payment_id,
        total=TAMPERED,
    )
    close = portone.post(f"/payments/{payment_id}/virtual-account/close").respond(
        200, json={"closedAt": "2026-11-27T00:00:00Z"}
    )
    cancel = portone.post(f"/payments/{payment_id}/cancel").mock(return_value=cancelled(TAMPERED))

    response = await complete(client, payment_id)

    assert assert_problem(response, 409, "PAYMENT_REJECTED")["reason"] == "AMOUNT_MISMATCH"
    assert close.call_count == 1
    assert close.calls.last.request.url.params["storeId"] == STORE_ID
    assert cancel.call_count == 0
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["compensation_status"]) == ("REJECTED", "DONE")
    assert await transitions(db, order["orderId"]) == [("PENDING", "REJECTED")]
    [closed] = await compensation_events(db, order["orderId"])
    assert "closed the virtual account" in closed["detail"]


async def test_virtual_account_deposited_before_it_was_closed_is_cancelled_by_the_reconciler(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    services: Services,
    order: dict[str, Any],
) -> None:
    payment_id = order["paymentId"]
    fetch = account_issued(
        portone,
        payment_id,
        total=TAMPERED,
    )
    close = portone.post(f"/payments/{payment_id}/virtual-account/close").mock(
        return_value=portone_error(409, "PAYMENT_NOT_WAITING_FOR_DEPOSIT")
    )
    cancel = portone.post(f"/payments/{payment_id}/cancel").mock(return_value=cancelled(TAMPERED))
    await complete(client, payment_id)
    assert (await order_row(db, order["orderId"]))["compensation_status"] == "OWED"
    fetch.respond(200, json=payment_body(payment_id, virtual_account=True, total=TAMPERED))
    portone_lists(portone)
    await after_backoff(db, order["orderId"])

    await services.reconciler().run_pass()

    assert close.call_count == 1
    assert [body["currentCancellableAmount"] for body in sent(cancel)] == [TAMPERED]
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["compensation_status"]) == ("REJECTED", "DONE")
    assert row["paid_at"] is None


class TestWhenAutoCancelIsOff:
    @pytest.fixture
    def settings(self, database_url: str) -> Settings:
        return make_settings(database_url, auto_cancel_on_mismatch=False)

    async def test_tampered_payment_is_rejected_but_never_cancelled_at_portone(
        self,
        client: httpx.AsyncClient,
        portone: respx.MockRouter,
        db: asyncpg.Connection,
        services: Services,
        order: dict[str, Any],
    ) -> None:
        payment_id = order["paymentId"]
        fetch = portone_returns(portone, payment_id, total=TAMPERED)
        cancel = portone.post(f"/payments/{payment_id}/cancel").mock(
            return_value=cancelled(TAMPERED)
        )
        close = portone.post(f"/payments/{payment_id}/virtual-account/close").respond(
            200, json={"closedAt": "2026-11-27T00:00:00Z"}
        )

        response = await complete(client, payment_id)
        portone_lists(portone)
        await services.reconciler().run_pass()

        assert assert_problem(response, 409, "PAYMENT_REJECTED")["reason"] == "AMOUNT_MISMATCH"
        assert cancel.call_count == close.call_count == 0
        assert fetch.call_count == 1
        row = await order_row(db, order["orderId"])
        assert (row["status"], row["compensation_status"]) == ("REJECTED", "DISABLED")
        assert await transitions(db, order["orderId"]) == [("PENDING", "REJECTED")]
        assert await compensation_events(db, order["orderId"]) == []


async def test_rejected_payment_with_nothing_left_to_cancel_is_compensated_without_a_call(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    """Found by scripts/stress.py: a zero-amount forged payment stayed owed forever."""
    order = await create_order(client)
    portone_returns(portone, order["paymentId"], total=0)
    cancel = portone.post(f"/payments/{order['paymentId']}/cancel").respond(
        409, json={"type": "CANCEL_AMOUNT_EXCEEDS_CANCELLABLE_AMOUNT", "message": "nothing left"}
    )

    response = await client.post("/payments/complete", json={"paymentId": order["paymentId"]})

    assert response.status_code == 409
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["compensation_status"]) == ("REJECTED", "DONE")
    assert cancel.call_count == 0
