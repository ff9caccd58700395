"""PortOne's own Idempotency-Key on every cancellation: a retry whose answer was lost gets
PortOne's first answer back, so two refunds alike in amount and reason can never claim
the same cancellation."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import respx

from app.refunds import service, settlement
from app.sandbox import state
from tests.emulated_portone import EmulatedPortOne
from tests.helpers import INTERNAL
from tests.problem_details import assert_problem

REASON = {"amount": 3_000, "reason": "one waffle was cold"}


@pytest.fixture
def emulated(portone: respx.MockRouter) -> EmulatedPortOne:
    return EmulatedPortOne(portone)


async def refund(client: httpx.AsyncClient, order: dict[str, Any], key: str) -> httpx.Response:
    headers = INTERNAL | {"Idempotency-Key": key}
    return await client.post(f"/orders/{order['orderId']}/refund", json=REASON, headers=headers)


def keys_sent(emulated: EmulatedPortOne) -> list[str]:
    return [r.headers["idempotency-key"] for r in emulated.calls("POST", "/cancel")]


async def test_retries_of_two_alike_refunds_whose_answers_were_lost_each_claim_their_own(
    client: httpx.AsyncClient, emulated: EmulatedPortOne, db: asyncpg.Connection
) -> None:
    order = await emulated.paid_order(client)
    cancel = f"/payments/{order['paymentId']}/cancel"
    for key in ("K1", "K2"):
        emulated.answer_lost.add(cancel)  # PortOne cancels; its answer never arrives
        assert_problem(await refund(client, order, key), 503, "PORTONE_UNAVAILABLE")
        await emulated.deliver_webhooks(client)  # the order learns what PortOne did

    retried = await asyncio.gather(refund(client, order, "K1"), refund(client, order, "K2"))

    assert [r.status_code for r in retried] == [200, 200], [r.text for r in retried]
    payment = emulated.emulator.get(order["paymentId"])
    assert [c.status for c in payment.cancellations] == ["SUCCEEDED", "SUCCEEDED"]
    rows = await db.fetch(
        "SELECT idempotency_key, cancellation_id, status FROM refunds ORDER BY created_at"
    )
    assert [(r["idempotency_key"], r["status"]) for r in rows] == [
        ("K1", "SUCCEEDED"),
        ("K2", "SUCCEEDED"),
    ]
    assert sorted(r["cancellation_id"] for r in rows) == sorted(c.id for c in payment.cancellations)
    first_k1, first_k2, retry_a, retry_b = keys_sent(emulated)
    assert first_k1 != first_k2
    assert {retry_a, retry_b} == {first_k1, first_k2}  # each retry asked with its own key
    final = (await client.get(f"/orders/{order['orderId']}", headers=INTERNAL)).json()
    assert final["refundedAmount"] == 6_000


async def test_a_refused_retry_within_portones_window_never_takes_an_alike_refunds_cancellation(
    client: httpx.AsyncClient, emulated: EmulatedPortOne, db: asyncpg.Connection
) -> None:
    """K1 cancels at PortOne and loses its answer; K2, alike, is refused (the balance it
    read had moved) and loses that answer too. Within PortOne's window K2's retry is
    PortOne's refusal again: it made no cancellation, so K1's is not its to claim."""
    order = await emulated.paid_order(client)
    cancel = f"/payments/{order['paymentId']}/cancel"
    for key in ("K1", "K2"):
        emulated.answer_lost.add(cancel)
        assert_problem(await refund(client, order, key), 503, "PORTONE_UNAVAILABLE")

    k2 = await refund(client, order, "K2")
    k1 = await refund(client, order, "K1")

    assert_problem(k2, 409, "REFUND_CONFLICT")
    assert k1.status_code == 200, k1.text
    [made] = emulated.emulator.get(order["paymentId"]).cancellations
    rows = await db.fetch(
        "SELECT idempotency_key, status, cancellation_id FROM refunds ORDER BY created_at"
    )
    assert [tuple(r) for r in rows] == [("K1", "SUCCEEDED", made.id), ("K2", "FAILED", None)]


async def test_the_emulator_replays_the_first_answer_to_a_key_and_acts_once(
    emulated: EmulatedPortOne,
) -> None:
    order = {"paymentId": "pay_idem_1", "orderName": "W", "amount": 10_000, "currency": "KRW"}
    emulated.pay(order)
    body = {"reason": "r", "amount": 1_000, "currentCancellableAmount": 10_000}
    headers = {
        "Authorization": "PortOne portone-test-secret",
        "Idempotency-Key": '"key-of-16-chars-x"',
    }
    url = "https://portone.test/payments/pay_idem_1/cancel"

    async with httpx.AsyncClient() as http:
        first = await http.post(url, json=body, headers=headers)
        again = await http.post(url, json=body, headers=headers)
        later = body | {"currentCancellableAmount": 9_000}
        other = await http.post(
            url, json=later, headers=headers | {"Idempotency-Key": '"another-key-of-16"'}
        )

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert other.json()["cancellation"]["id"] != first.json()["cancellation"]["id"]
    assert len(emulated.emulator.get("pay_idem_1").cancellations) == 2


async def test_past_portones_window_a_cancellation_is_still_claimed_by_one_refund_only(
    client: httpx.AsyncClient,
    emulated: EmulatedPortOne,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fallback past PortOne's three hours matches amount and reason: two refunds alike
    could both match one cancellation. Forced here (the second reads the claims before the
    first's commit), the database lets only one of them have it."""
    # Keys no longer replay, and the service knows it.
    monkeypatch.setattr(state, "IDEMPOTENCY_WINDOW", timedelta(0))
    monkeypatch.setattr(service, "IDEMPOTENCY_WINDOW", timedelta(0))
    order = await emulated.paid_order(client)
    cancel = f"/payments/{order['paymentId']}/cancel"
    for key in ("K1", "K2"):
        emulated.answer_lost.add(cancel)
        assert_problem(await refund(client, order, key), 503, "PORTONE_UNAVAILABLE")
        await emulated.deliver_webhooks(client)
        if key == "K1":
            assert (await refund(client, order, "K1")).status_code == 200
    first = emulated.emulator.get(order["paymentId"]).cancellations[0]
    matches = iter([first])  # K2's first look: K1's cancellation, as yet unclaimed to it
    real_match = settlement.unclaimed_match
    monkeypatch.setattr(
        service,
        "unclaimed_match",
        lambda *args: next(matches, None) or real_match(*args),
    )

    retried = await refund(client, order, "K2")

    assert retried.status_code == 200, retried.text
    rows = await db.fetch(
        "SELECT idempotency_key, cancellation_id FROM refunds ORDER BY created_at"
    )
    made = [c.id for c in emulated.emulator.get(order["paymentId"]).cancellations]
    assert [(r["idempotency_key"], r["cancellation_id"]) for r in rows] == list(
        zip(["K1", "K2"], made, strict=True)
    )
