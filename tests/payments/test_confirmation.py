"""Manual confirmation: with a `paymentToken`, the service confirms the payment at PortOne
on the order's own terms before anything is charged, then reads and applies it like any
completion. Against the emulated PortOne (state), and respx for PortOne's odd answers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import httpx
import pytest
import respx

from app.config import Settings
from app.payments.confirmation import confirmation_key
from tests.emulated_portone import EmulatedPortOne
from tests.helpers import (
    INTERNAL,
    create_order,
    events,
    make_settings,
    order_row,
    portone_returns,
)
from tests.problem_details import assert_problem


@pytest.fixture
def emulated(portone: respx.MockRouter) -> EmulatedPortOne:
    return EmulatedPortOne(portone)


async def complete(
    client: httpx.AsyncClient, order: dict[str, Any], token: str, **body: Any
) -> httpx.Response:
    body = {"paymentId": order["paymentId"], "paymentToken": token, **body}
    return await client.post("/payments/complete", json=body)


def authorized(emulated: EmulatedPortOne, order: dict[str, Any], **changes: Any) -> str:
    """The customer authorizes the payment on a manual channel: its token."""
    payment = emulated.pay(order, manual=True, **changes)
    assert payment.status == "READY"
    assert payment.payment_token is not None
    return payment.payment_token


async def test_a_token_is_confirmed_on_the_orders_terms_then_the_payment_is_verified(
    client: httpx.AsyncClient, emulated: EmulatedPortOne, db: asyncpg.Connection
) -> None:
    order = await create_order(client, amount=10_000)
    token = authorized(emulated, order)

    response = await complete(client, order, token, txId="tx-1")

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "PAID"
    [confirm] = emulated.calls("POST", "/confirm")
    assert json.loads(confirm.content) == {
        "storeId": "store-test-0001",
        "paymentToken": token,
        "txId": "tx-1",
        "totalAmount": 10_000,
        "currency": "KRW",
        "isTest": False,
    }
    key = confirmation_key(order["paymentId"], token)
    assert confirm.headers["Idempotency-Key"] == f'"{key}"'
    assert emulated.emulator.get(order["paymentId"]).status == "PAID"
    [entry] = await events(db, order["orderId"])
    assert (entry["source"], entry["from_status"], entry["to_status"]) == (
        "complete",
        "PENDING",
        "PAID",
    )


class TestWhenTestPaymentsAreAccepted:
    @pytest.fixture
    def settings(self, database_url: str) -> Settings:
        return make_settings(database_url, portone_accept_test_payments=True)

    @pytest.mark.parametrize("channel_type", ["LIVE", "TEST"])
    async def test_a_payment_on_either_channel_is_confirmed_without_is_test(
        self, client: httpx.AsyncClient, emulated: EmulatedPortOne, channel_type: str
    ) -> None:
        order = await create_order(client, amount=10_000)
        token = authorized(emulated, order, channel_type=channel_type)

        response = await complete(client, order, token)

        assert response.status_code == 200, response.text
        [confirm] = emulated.calls("POST", "/confirm")
        assert "isTest" not in json.loads(confirm.content)
        assert emulated.emulator.get(order["paymentId"]).status == "PAID"


async def test_a_tampered_amount_is_refused_by_portone_and_nothing_is_charged(
    client: httpx.AsyncClient, emulated: EmulatedPortOne, db: asyncpg.Connection
) -> None:
    order = await create_order(client, amount=10_000)
    token = authorized(emulated, order, amount=100)

    response = await complete(client, order, token)

    assert (
        assert_problem(response, 409, "PAYMENT_NOT_CONFIRMED")["reason"] == "INFORMATION_MISMATCH"
    )
    payment = emulated.emulator.get(order["paymentId"])
    assert (payment.status, payment.paid_at, payment.cancellations) == ("READY", None, [])
    assert emulated.calls("POST", "/cancel") == []
    assert (await order_row(db, order["orderId"]))["status"] == "PENDING"


async def test_a_token_portone_does_not_know_is_refused_and_the_order_stays_pending(
    client: httpx.AsyncClient, emulated: EmulatedPortOne, db: asyncpg.Connection
) -> None:
    order = await create_order(client, amount=10_000)
    authorized(emulated, order)

    response = await complete(client, order, "ptkn_forged")

    problem = assert_problem(response, 409, "PAYMENT_NOT_CONFIRMED")
    assert problem["reason"] == "INVALID_PAYMENT_TOKEN"
    assert emulated.emulator.get(order["paymentId"]).status == "READY"
    assert (await order_row(db, order["orderId"]))["status"] == "PENDING"


async def test_concurrent_completions_with_one_token_confirm_once(
    client: httpx.AsyncClient, emulated: EmulatedPortOne
) -> None:
    order = await create_order(client, amount=10_000)
    token = authorized(emulated, order)

    answers = await asyncio.gather(*(complete(client, order, token) for _ in range(8)))

    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    # One confirmation: the calls of this process share it, and any call that came after
    # it landed carries its key, which PortOne answers with its first answer.
    keys = {c.headers["Idempotency-Key"] for c in emulated.calls("POST", "/confirm")}
    assert len(keys) == 1
    assert len(emulated.calls("POST", "/confirm")) < len(answers)
    assert [json.loads(w)["type"] for w in emulated.webhooks] == ["Transaction.Paid"]


async def test_a_confirmation_whose_answer_was_lost_is_retried_with_the_same_key(
    client: httpx.AsyncClient, emulated: EmulatedPortOne, db: asyncpg.Connection
) -> None:
    order = await create_order(client, amount=10_000)
    token = authorized(emulated, order)
    emulated.answer_lost.add(f"/payments/{order['paymentId']}/confirm")

    lost = await complete(client, order, token)
    retried = await complete(client, order, token)

    assert_problem(lost, 503, "PORTONE_UNAVAILABLE")
    assert retried.status_code == 200, retried.text
    first, second = emulated.calls("POST", "/confirm")
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    payment = emulated.emulator.get(order["paymentId"])
    assert payment.status == "PAID"
    assert payment.cancellations == []
    assert (await order_row(db, order["orderId"]))["status"] == "PAID"


async def test_a_payment_portone_already_charged_is_read_and_applied(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order = await create_order(client, amount=10_000)
    portone.post(f"/payments/{order['paymentId']}/confirm").respond(
        409, json={"type": "ALREADY_PAID", "message": "결제가 이미 완료되었습니다."}
    )
    portone_returns(portone, order["paymentId"])

    response = await complete(client, order, "ptkn_1")

    assert response.status_code == 200, response.text
    assert (await order_row(db, order["orderId"]))["status"] == "PAID"


async def test_a_card_company_that_declines_at_approval_is_a_refusal_not_an_outage(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order = await create_order(client, amount=10_000)
    portone.post(f"/payments/{order['paymentId']}/confirm").respond(
        502, json={"type": "PG_PROVIDER", "message": "한도 초과", "pgCode": "LIMIT"}
    )

    response = await complete(client, order, "ptkn_1")

    problem = assert_problem(response, 409, "PAYMENT_NOT_CONFIRMED")
    assert problem["reason"] == "PG_PROVIDER"
    assert (await order_row(db, order["orderId"]))["status"] == "PENDING"


async def test_portone_failing_to_answer_a_confirmation_is_retryable(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order = await create_order(client, amount=10_000)
    portone.post(f"/payments/{order['paymentId']}/confirm").respond(502)

    response = await complete(client, order, "ptkn_1")

    assert_problem(response, 503, "PORTONE_UNAVAILABLE")
    assert (await order_row(db, order["orderId"]))["status"] == "PENDING"


async def test_a_cancelled_order_confirms_nothing(
    client: httpx.AsyncClient, emulated: EmulatedPortOne
) -> None:
    order = await create_order(client, amount=10_000)
    token = authorized(emulated, order)
    cancelled = await client.post(f"/orders/{order['orderId']}/cancel", headers=INTERNAL)
    assert cancelled.status_code == 200, cancelled.text

    response = await complete(client, order, token)

    assert_problem(response, 409, "ORDER_CLOSED")
    assert emulated.calls("POST", "/confirm") == []
    assert emulated.emulator.get(order["paymentId"]).status == "READY"


async def test_an_expired_order_confirms_nothing(
    client: httpx.AsyncClient, emulated: EmulatedPortOne, db: asyncpg.Connection
) -> None:
    order = await create_order(client, amount=10_000)
    token = authorized(emulated, order)
    await db.execute(
        "UPDATE orders SET expires_at = now() - interval '1 second' WHERE id = $1",
        order["orderId"],
    )

    response = await complete(client, order, token)

    assert_problem(response, 409, "ORDER_CLOSED")
    assert emulated.calls("POST", "/confirm") == []


async def test_an_order_that_left_pending_is_answered_as_it_is_without_confirming(
    client: httpx.AsyncClient, emulated: EmulatedPortOne
) -> None:
    order = await create_order(client, amount=10_000)
    token = authorized(emulated, order)
    assert (await complete(client, order, token)).status_code == 200

    again = await complete(client, order, token)

    assert again.status_code == 200
    assert again.json()["status"] == "PAID"
    assert len(emulated.calls("POST", "/confirm")) == 1


async def test_the_return_landing_confirms_a_token_too(
    client: httpx.AsyncClient, emulated: EmulatedPortOne, db: asyncpg.Connection
) -> None:
    order = await create_order(client, amount=10_000, returnUrl="https://shop.test/done")
    token = authorized(emulated, order)

    response = await client.get(
        "/payments/return", params={"paymentId": order["paymentId"], "paymentToken": token}
    )

    assert response.status_code == 303
    assert "status=PAID" in response.headers["location"]
    assert len(emulated.calls("POST", "/confirm")) == 1
    assert (await order_row(db, order["orderId"]))["status"] == "PAID"


async def test_a_tampered_amount_on_the_return_landing_charges_nothing(
    client: httpx.AsyncClient, emulated: EmulatedPortOne
) -> None:
    order = await create_order(client, amount=10_000, returnUrl="https://shop.test/done")
    token = authorized(emulated, order, amount=100)

    response = await client.get(
        "/payments/return", params={"paymentId": order["paymentId"], "paymentToken": token}
    )

    assert response.status_code == 303
    assert "status=PENDING" in response.headers["location"]
    assert emulated.emulator.get(order["paymentId"]).status == "READY"


async def test_a_cancel_that_lands_while_portone_confirms_wins_and_the_money_goes_back(
    client: httpx.AsyncClient, emulated: EmulatedPortOne, db: asyncpg.Connection
) -> None:
    order = await create_order(client, amount=10_000)
    token = authorized(emulated, order)
    cancels: list[httpx.Response] = []

    async def shop_cancels() -> None:
        cancels.append(await client.post(f"/orders/{order['orderId']}/cancel", headers=INTERNAL))

    emulated.meanwhile[f"/payments/{order['paymentId']}/confirm"] = shop_cancels

    response = await complete(client, order, token)

    [cancelled] = cancels
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "CANCELLED"
    assert assert_problem(response, 409, "PAYMENT_REJECTED")["reason"] == "ORDER_CLOSED"
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["compensation_status"]) == ("REJECTED", "DONE")
    assert len(emulated.calls("POST", "/cancel")) == 1
    assert emulated.emulator.get(order["paymentId"]).status == "CANCELLED"


async def test_a_cancel_after_the_confirmation_loses(
    client: httpx.AsyncClient, emulated: EmulatedPortOne, db: asyncpg.Connection
) -> None:
    order = await create_order(client, amount=10_000)
    token = authorized(emulated, order)
    assert (await complete(client, order, token)).status_code == 200

    cancelled = await client.post(f"/orders/{order['orderId']}/cancel", headers=INTERNAL)

    assert_problem(cancelled, 409, "ORDER_NOT_CANCELLABLE")
    assert (await order_row(db, order["orderId"]))["status"] == "PAID"
    assert emulated.emulator.get(order["paymentId"]).status == "PAID"


@pytest.mark.parametrize("round_", range(6))
async def test_confirm_and_cancel_at_once_end_in_exactly_one_of_them(
    client: httpx.AsyncClient, emulated: EmulatedPortOne, db: asyncpg.Connection, round_: int
) -> None:
    order = await create_order(client, amount=10_000)
    token = authorized(emulated, order)
    cancel = client.post(f"/orders/{order['orderId']}/cancel", headers=INTERNAL)

    completed, cancelled = await asyncio.gather(complete(client, order, token), cancel)

    row = await order_row(db, order["orderId"])
    payment = emulated.emulator.get(order["paymentId"])
    if cancelled.status_code == 200:  # the cancel won: nothing kept
        assert completed.status_code in (409, 503), completed.text
        assert row["status"] in ("CANCELLED", "REJECTED")
        assert payment.status in ("READY", "CANCELLED")  # never charged, or given back
    else:  # the confirmation won: paid, and the cancel was refused
        assert_problem(cancelled, 409, "ORDER_NOT_CANCELLABLE")
        assert completed.status_code == 200
        assert (row["status"], payment.status) == ("PAID", "PAID")


async def test_made_up_tokens_for_one_payment_reach_portone_one_at_a_time(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order = await create_order(client, amount=10_000)
    in_flight, most = 0, 0

    async def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return httpx.Response(400, json={"type": "INVALID_PAYMENT_TOKEN", "message": "no"})

    route = portone.post(f"/payments/{order['paymentId']}/confirm").mock(side_effect=refuse)

    answers = await asyncio.gather(*(complete(client, order, f"ptkn_{n}") for n in range(6)))

    for answer in answers:
        problem = assert_problem(answer, 409, "PAYMENT_NOT_CONFIRMED")
        assert problem["reason"] == "INVALID_PAYMENT_TOKEN"
    assert route.call_count == 6
    assert most == 1
    assert (await order_row(db, order["orderId"]))["status"] == "PENDING"
