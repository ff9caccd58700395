"""The public doors cannot be turned against PortOne: a burst for one payment shares its
reads, calls in flight are capped, and what is plainly wrong is refused before any work."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from app.config import Settings
from app.db import Database
from app.portone import client as portone_client
from tests.helpers import create_order, make_settings, order_row, post_webhook, transitions
from tests.portone_payloads import payment_body
from tests.problem_details import assert_problem

BURST = 150


def complete(client: httpx.AsyncClient, payment_id: str) -> Any:
    return client.post("/payments/complete", json={"paymentId": payment_id})


def reads(portone: respx.MockRouter, payment_id: str, **payment: Any) -> respx.Route:
    """PortOne's answer for the payment, after a moment (so a burst meets it in flight)."""

    async def answer(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)
        return httpx.Response(200, json=payment_body(payment_id, **payment))

    return portone.get(f"/payments/{payment_id}").mock(side_effect=answer)


def answers(responses: list[httpx.Response]) -> set[tuple[int, str | None]]:
    """Each answer's status, and its problem code or the order's status."""
    return {(r.status_code, r.json().get("code") or r.json()["status"]) for r in responses}


async def test_a_burst_for_a_payment_not_yet_paid_costs_a_handful_of_reads(
    client: httpx.AsyncClient, portone: respx.MockRouter
) -> None:
    order = await create_order(client)
    route = reads(portone, order["paymentId"], status="READY")

    burst = await asyncio.gather(*(complete(client, order["paymentId"]) for _ in range(BURST)))

    assert answers(burst) == {(409, "PAYMENT_NOT_PAID")}
    assert route.call_count <= 3


async def test_a_burst_for_a_paid_payment_costs_a_handful_of_reads_and_one_transition(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: Any
) -> None:
    order = await create_order(client)
    route = reads(portone, order["paymentId"])

    burst = await asyncio.gather(*(complete(client, order["paymentId"]) for _ in range(BURST)))

    assert answers(burst) == {(200, "PAID")}
    assert route.call_count <= 3
    assert await transitions(db, order["orderId"]) == [("PENDING", "PAID")]


async def test_a_payment_paid_at_portone_is_seen_paid_by_a_completion_a_second_later(
    client: httpx.AsyncClient, portone: respx.MockRouter
) -> None:
    order = await create_order(client)
    route = reads(portone, order["paymentId"], status="READY")
    assert (await complete(client, order["paymentId"])).status_code == 409
    reads(portone, order["paymentId"])  # the customer pays

    within = await complete(client, order["paymentId"])  # the not-yet-paid answer, reused
    assert route.call_count == 1
    await asyncio.sleep(1.0)
    later = await complete(client, order["paymentId"])

    assert_problem(within, 409, "PAYMENT_NOT_PAID")
    assert later.status_code == 200, later.text
    assert later.json()["status"] == "PAID"


async def test_a_webhook_reads_afresh_and_its_read_replaces_the_reused_one(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: Any
) -> None:
    order = await create_order(client)
    released = asyncio.Event()
    payments = iter(
        [payment_body(order["paymentId"], status="READY"), payment_body(order["paymentId"])]
    )

    reading = asyncio.Event()

    async def slow_then_paid(request: httpx.Request) -> httpx.Response:
        body = next(payments)
        if body["status"] == "READY":
            reading.set()
            await released.wait()  # a read begun before the payment was made
        return httpx.Response(200, json=body)

    route = portone.get(f"/payments/{order['paymentId']}").mock(side_effect=slow_then_paid)
    waiting = asyncio.create_task(complete(client, order["paymentId"]))
    await reading.wait()

    webhook = await post_webhook(client, order["paymentId"])  # PortOne: Transaction.Paid
    released.set()
    first = await waiting
    after = await complete(client, order["paymentId"])

    assert webhook.json() == {"outcome": "processed"}
    assert route.call_count == 2  # the webhook joined nothing
    assert first.json()["status"] == "PAID"  # its READY came after, and moved nothing
    assert after.json()["status"] == "PAID"
    assert (await order_row(db, order["orderId"]))["status"] == "PAID"


class TestTheCap:
    @pytest.fixture
    def settings(self, database_url: str) -> Settings:
        return make_settings(database_url, portone_max_in_flight=2)

    async def test_a_flood_beyond_the_cap_is_refused_with_retry_after_and_recovers(
        self,
        client: httpx.AsyncClient,
        portone: respx.MockRouter,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(portone_client, "CAP_WAIT_SECONDS", 0.05)
        orders = [await create_order(client) for _ in range(8)]
        released = asyncio.Event()

        async def slow(request: httpx.Request, payment_id: str) -> httpx.Response:
            await released.wait()
            return httpx.Response(200, json=payment_body(payment_id))

        portone.get(path__regex=r"^/payments/(?P<payment_id>[^/]+)$").mock(side_effect=slow)
        flood = [asyncio.create_task(complete(client, o["paymentId"])) for o in orders]
        await asyncio.sleep(0.3)
        released.set()
        answered = await asyncio.gather(*flood)
        again = await asyncio.gather(*(complete(client, o["paymentId"]) for o in orders))

        refused = [r for r in answered if r.status_code == 503]
        assert len(refused) == len(orders) - 2
        for response in refused:
            assert_problem(response, 503, "PORTONE_UNAVAILABLE")
            assert response.headers["Retry-After"] == "1"
        assert answers(again) == {(200, "PAID")}
        metrics = (await client.get("/metrics")).text
        assert 'portone_requests_total{operation="get_payment",status="refused"} 6.0' in metrics
        assert "portone_capacity_waits_total 6.0" in metrics


@pytest.mark.parametrize(
    ("path", "size"), [("/payments/complete", 16 * 1024 + 1), ("/webhooks/portone", 64 * 1024 + 1)]
)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_an_oversized_body_is_refused_before_it_is_read_whole(
    client: httpx.AsyncClient, portone: respx.MockRouter, path: str, size: int, chunked: bool
) -> None:
    body = b'{"paymentId": "' + b"x" * size + b'"}'
    content: Any = body
    if chunked:

        async def chunks() -> Any:
            for start in range(0, len(body), 4096):
                yield body[start : start + 4096]

        content = chunks()

    response = await client.post(
        path, content=content, headers={"content-type": "application/json"}
    )

    assert_problem(response, 413, "PAYLOAD_TOO_LARGE")
    assert not portone.calls


async def test_a_bad_webhook_signature_is_refused_before_any_database_work(
    client: httpx.AsyncClient, portone: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    touched: list[str] = []
    connect: Callable[..., Any] = Database.connect

    def spied(self: Database) -> Any:
        touched.append("connect")
        return connect(self)

    monkeypatch.setattr(Database, "connect", spied)

    response = await post_webhook(client, "pay_any", secret="whsec_" + "d3Jvbmcta2V5" * 3)

    assert_problem(response, 400, "WEBHOOK_SIGNATURE_INVALID")
    assert touched == []
    assert not portone.calls


async def test_a_new_attempt_a_moment_after_a_failed_one_is_read_afresh(
    client: httpx.AsyncClient, portone: respx.MockRouter
) -> None:
    order = await create_order(client, amount=10_000)
    payment_id = order["paymentId"]
    failed = payment_body(payment_id, status="FAILED", transactionId="tx-declined")
    paid = payment_body(payment_id, transactionId="tx-second-card")
    route = portone.get(f"/payments/{payment_id}").mock(
        side_effect=[httpx.Response(200, json=failed), httpx.Response(200, json=paid)]
    )

    declined = await client.post(
        "/payments/complete", json={"paymentId": payment_id, "txId": "tx-declined"}
    )
    second = await client.post(
        "/payments/complete", json={"paymentId": payment_id, "txId": "tx-second-card"}
    )

    assert_problem(declined, 409, "PAYMENT_NOT_PAID")
    assert second.status_code == 200, second.text
    assert second.json()["status"] == "PAID"
    assert route.call_count == 2
