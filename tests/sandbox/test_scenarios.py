"""Every sandbox scenario end to end: the emulator, its webhooks, and the service's orders.

Each control call is followed by `drain()`, so the webhooks it caused have landed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import fields
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic.alias_generators import to_camel

from app.config import Settings
from app.main import create_app
from app.reconcile import PassSummary
from app.sandbox.state import Sandbox
from tests.helpers import INTERNAL, age_order, create_order, make_settings, webhook_sender
from tests.problem_details import assert_validation_failed

AMOUNT = 10_000
TAMPERED = 100


class Sandboxed:
    """The service in sandbox mode, seen by the shop, the customer and PortOne's console."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient, settings: Settings) -> None:
        self.app = app
        self.client = client
        self.settings = settings

    @property
    def sandbox(self) -> Sandbox:
        sandbox: Sandbox = self.app.state.sandbox
        return sandbox

    async def act(self, payment_id: str, action: str, **body: Any) -> dict[str, Any]:
        """A control call (pay, deposit, fail, cancel), once its webhooks have landed."""
        response = await self.client.post(f"/sandbox/payments/{payment_id}/{action}", json=body)
        assert response.status_code == 200, response.text
        await webhook_sender(self.app).drain()
        assert webhook_sender(self.app).abandoned == 0, "the service refused a webhook"
        payment: dict[str, Any] = response.json()
        return payment

    async def complete(self, payment_id: str) -> httpx.Response:
        return await self.client.post("/payments/complete", json={"paymentId": payment_id})

    async def order(self, order_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/orders/{order_id}", headers=INTERNAL)
        assert response.status_code == 200, response.text
        order: dict[str, Any] = response.json()
        return order

    async def transitions(self, order_id: str) -> list[tuple[str, str | None, str]]:
        """(source, from, to) of every event that moved the order."""
        response = await self.client.get(f"/orders/{order_id}/history", headers=INTERNAL)
        assert response.status_code == 200, response.text
        return [
            (e["source"], e["fromStatus"], e["toStatus"])
            for e in response.json()["history"]
            if e["fromStatus"] != e["toStatus"]
        ]

    async def emulated(self, payment_id: str) -> dict[str, Any]:
        """The payment as PortOne (the emulator) holds it."""
        response = await self.client.get(
            f"/sandbox/portone/payments/{payment_id}",
            headers={"Authorization": f"PortOne {self.settings.api_secret}"},
        )
        assert response.status_code == 200, response.text
        payment: dict[str, Any] = response.json()
        return payment


@pytest.fixture
def shop(app: FastAPI, client: httpx.AsyncClient, settings: Settings) -> Sandboxed:
    return Sandboxed(app, client, settings)


async def test_card_payment_completes_to_paid(shop: Sandboxed) -> None:
    order = await create_order(shop.client, AMOUNT)
    await shop.act(order["paymentId"], "pay", method="CARD")

    response = await shop.complete(order["paymentId"])

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "PAID"
    assert response.json()["paidAt"] is not None
    assert [t[1:] for t in await shop.transitions(order["orderId"])] == [("PENDING", "PAID")]


async def test_webhooks_come_a_moment_after_the_change_so_the_completion_sees_it_first(
    webhooks_late: None, shop: Sandboxed
) -> None:
    order = await create_order(shop.client, AMOUNT)
    paid = await shop.client.post(f"/sandbox/payments/{order['paymentId']}/pay")
    changed_at = time.monotonic()

    completed = await shop.complete(order["paymentId"])
    await webhook_sender(shop.app).drain()

    assert paid.status_code == 200, paid.text
    assert completed.json()["status"] == "PAID"
    assert time.monotonic() - changed_at >= 1.0
    assert await shop.transitions(order["orderId"]) == [("complete", "PENDING", "PAID")]
    assert webhook_sender(shop.app).delivered == 2  # the current and the legacy version


async def test_virtual_account_awaits_deposit_then_the_deposit_webhook_pays_it(
    shop: Sandboxed,
) -> None:
    order = await create_order(shop.client, AMOUNT)
    issued = await shop.act(order["paymentId"], "pay", method="VIRTUAL_ACCOUNT")

    completed = await shop.complete(order["paymentId"])
    await shop.act(order["paymentId"], "deposit")

    assert completed.status_code == 200, completed.text
    assert completed.json()["status"] == "AWAITING_DEPOSIT"
    account = completed.json()["virtualAccount"]
    assert account["bank"] == "SHINHAN"
    assert account["accountNumber"] == issued["method"]["accountNumber"]
    assert account["remitteeName"]
    assert account["expiresAt"]
    assert (await shop.order(order["orderId"]))["status"] == "PAID"
    assert (await shop.transitions(order["orderId"]))[-1] == ("webhook", "AWAITING_DEPOSIT", "PAID")


async def test_failed_attempt_is_not_paid_and_leaves_the_order_pending(shop: Sandboxed) -> None:
    order = await create_order(shop.client, AMOUNT)
    await shop.act(order["paymentId"], "fail", reason="card limit exceeded")

    response = await shop.complete(order["paymentId"])

    assert response.status_code == 409, response.text
    problem = response.json()
    assert (problem["code"], problem["portoneStatus"]) == ("PAYMENT_NOT_PAID", "FAILED")
    assert problem["failureReason"] == "card limit exceeded"
    assert (await shop.order(order["orderId"]))["status"] == "PENDING"
    assert await shop.transitions(order["orderId"]) == []


async def test_failed_attempt_can_be_retried_and_paid(shop: Sandboxed) -> None:
    order = await create_order(shop.client, AMOUNT)
    await shop.act(order["paymentId"], "fail")
    await shop.act(order["paymentId"], "pay", method="CARD")

    response = await shop.complete(order["paymentId"])

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "PAID"


async def test_tampered_amount_is_rejected_and_cancelled_once(shop: Sandboxed) -> None:
    order = await create_order(shop.client, AMOUNT)
    await shop.act(order["paymentId"], "pay", method="CARD", amount=TAMPERED)

    response = await shop.complete(order["paymentId"])
    await webhook_sender(shop.app).drain()

    assert response.status_code == 409, response.text
    assert (response.json()["code"], response.json()["reason"]) == (
        "PAYMENT_REJECTED",
        "AMOUNT_MISMATCH",
    )
    payment = await shop.emulated(order["paymentId"])
    assert payment["status"] == "CANCELLED"
    assert [c["totalAmount"] for c in payment["cancellations"]] == [TAMPERED]
    rejected = await shop.order(order["orderId"])
    assert (rejected["status"], rejected["rejectionReason"]) == ("REJECTED", "AMOUNT_MISMATCH")
    assert rejected["refundedAmount"] == TAMPERED
    assert [t[1:] for t in await shop.transitions(order["orderId"])] == [("PENDING", "REJECTED")]


async def test_tampered_virtual_account_is_rejected_and_closed(shop: Sandboxed) -> None:
    order = await create_order(shop.client, AMOUNT)
    await shop.act(order["paymentId"], "pay", method="VIRTUAL_ACCOUNT", amount=TAMPERED)

    response = await shop.complete(order["paymentId"])
    await webhook_sender(shop.app).drain()

    assert response.status_code == 409, response.text
    assert response.json()["code"] == "PAYMENT_REJECTED"
    assert (await shop.emulated(order["paymentId"]))["status"] == "CANCELLED"
    assert (await shop.order(order["orderId"]))["status"] == "REJECTED"


async def test_test_channel_payment_is_accepted_in_the_sandbox(shop: Sandboxed) -> None:
    order = await create_order(shop.client, AMOUNT)
    await shop.act(order["paymentId"], "pay", method="CARD", channelType="TEST")

    response = await shop.complete(order["paymentId"])

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "PAID"


async def test_console_cancellations_refund_the_order_by_webhooks_alone(shop: Sandboxed) -> None:
    order = await create_order(shop.client, AMOUNT)
    await shop.act(order["paymentId"], "pay", method="CARD")
    assert (await shop.complete(order["paymentId"])).status_code == 200

    await shop.act(order["paymentId"], "cancel", amount=3_000)
    partly = await shop.order(order["orderId"])
    await shop.act(order["paymentId"], "cancel")
    fully = await shop.order(order["orderId"])

    assert (partly["status"], partly["refundedAmount"]) == ("PARTIALLY_REFUNDED", 3_000)
    assert (fully["status"], fully["refundedAmount"]) == ("REFUNDED", AMOUNT)
    assert (await shop.transitions(order["orderId"]))[-2:] == [
        ("webhook", "PAID", "PARTIALLY_REFUNDED"),
        ("webhook", "PARTIALLY_REFUNDED", "REFUNDED"),
    ]


async def test_refunds_through_the_service_reach_the_emulator(shop: Sandboxed) -> None:
    order = await create_order(shop.client, AMOUNT)
    await shop.act(order["paymentId"], "pay", method="CARD")
    assert (await shop.complete(order["paymentId"])).status_code == 200

    partly = await shop.client.post(
        f"/orders/{order['orderId']}/refund",
        json={"amount": 4_000, "reason": "one item returned"},
        headers=INTERNAL,
    )
    await webhook_sender(shop.app).drain()
    rest = await shop.client.post(
        f"/orders/{order['orderId']}/refund", json={"reason": "all returned"}, headers=INTERNAL
    )
    await webhook_sender(shop.app).drain()

    assert partly.status_code == 200, partly.text
    assert (partly.json()["status"], partly.json()["refundedAmount"]) == (
        "PARTIALLY_REFUNDED",
        4_000,
    )
    assert rest.status_code == 200, rest.text
    payment = await shop.emulated(order["paymentId"])
    assert payment["status"] == "CANCELLED"
    assert [c["totalAmount"] for c in payment["cancellations"]] == [4_000, 6_000]
    refunded = await shop.order(order["orderId"])
    assert (refunded["status"], refunded["refundedAmount"]) == ("REFUNDED", AMOUNT)


async def test_paid_payment_whose_webhooks_never_arrive_is_repaired_by_the_reconciler(
    shop: Sandboxed, db: asyncpg.Connection
) -> None:
    await webhook_sender(shop.app).stop()
    order = await create_order(shop.client, AMOUNT)
    paid = await shop.client.post(f"/sandbox/payments/{order['paymentId']}/pay", json={})
    assert paid.status_code == 200, paid.text
    before = await shop.order(order["orderId"])
    await age_order(db, order["orderId"], minutes=5)

    summary = await shop.app.state.services.reconciler().run_pass()

    assert before["status"] == "PENDING"
    assert summary.ok
    assert (await shop.order(order["orderId"]))["status"] == "PAID"
    assert await shop.transitions(order["orderId"]) == [("reconcile", "PENDING", "PAID")]


async def test_console_cancellation_whose_webhooks_never_arrive_is_found_by_the_reconciler(
    shop: Sandboxed,
) -> None:
    order = await create_order(shop.client, AMOUNT)
    await shop.act(order["paymentId"], "pay", method="CARD")
    await webhook_sender(shop.app).stop()
    cancelled = await shop.client.post(f"/sandbox/payments/{order['paymentId']}/cancel", json={})
    assert cancelled.status_code == 200, cancelled.text

    summary = await shop.app.state.services.reconciler().run_pass()

    assert summary.ok
    refunded = await shop.order(order["orderId"])
    assert (refunded["status"], refunded["refundedAmount"]) == ("REFUNDED", AMOUNT)
    assert (await shop.transitions(order["orderId"]))[-1] == ("reconcile", "PAID", "REFUNDED")


async def test_demo_checkout_creates_an_order_the_page_can_follow(shop: Sandboxed) -> None:
    page = await shop.client.get("/")
    created = await shop.client.post("/sandbox/checkout")
    order = created.json()
    await shop.act(order["paymentId"], "pay", method="CARD")
    completed = await shop.complete(order["paymentId"])
    followed = await shop.client.get(f"/sandbox/orders/{order['orderId']}")

    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "SANDBOX" in page.text
    assert created.status_code == 201, created.text
    assert (order["status"], order["amount"]) == ("PENDING", AMOUNT)
    # http://service.test/ may not be a returnUrl: the redirect flow ends on the service's page.
    assert order["returnUrl"] is None
    assert completed.status_code == 200, completed.text
    assert followed.json()["order"]["status"] == "PAID"


async def test_manual_payment_is_confirmed_by_the_completion_then_paid(shop: Sandboxed) -> None:
    order = (await shop.client.post("/sandbox/checkout")).json()
    authorized = await shop.act(order["paymentId"], "pay", confirm="MANUAL")

    completed = await shop.client.post(
        "/payments/complete",
        json={"paymentId": order["paymentId"], "paymentToken": authorized["paymentToken"]},
    )

    assert authorized["status"] == "READY"
    assert completed.status_code == 200, completed.text
    assert completed.json()["status"] == "PAID"
    assert (await shop.emulated(order["paymentId"]))["status"] == "PAID"


async def test_demo_timeline_shows_the_confirmation_portone_refused_and_nothing_charged(
    shop: Sandboxed,
) -> None:
    order = (await shop.client.post("/sandbox/checkout")).json()
    authorized = await shop.act(order["paymentId"], "pay", confirm="MANUAL", amount=TAMPERED)

    completed = await shop.client.post(
        "/payments/complete",
        json={"paymentId": order["paymentId"], "paymentToken": authorized["paymentToken"]},
    )
    timeline = (await shop.client.get(f"/sandbox/orders/{order['orderId']}")).json()

    assert completed.status_code == 409, completed.text
    assert completed.json()["code"] == "PAYMENT_NOT_CONFIRMED"
    confirm = {
        "method": "POST",
        "path": f"/payments/{order['paymentId']}/confirm",
        "status": 409,
        "refusal": "INFORMATION_MISMATCH",
    }
    assert [call | {"at": None} for call in timeline["portoneCalls"]] == [confirm | {"at": None}]
    assert (timeline["order"]["status"], timeline["portonePayment"]["status"]) == (
        "PENDING",
        "READY",
    )
    assert "cancellations" not in timeline["portonePayment"]


async def test_demo_reconciler_pass_tells_every_count_including_the_orders_it_closed(
    shop: Sandboxed, db: asyncpg.Connection
) -> None:
    order = (await shop.client.post("/sandbox/checkout")).json()
    await db.execute(
        "UPDATE orders SET expires_at = now() - interval '1 second' WHERE id = $1",
        order["orderId"],
    )

    answer = await shop.client.post("/sandbox/reconcile")

    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {to_camel(f.name) for f in fields(PassSummary)}
    assert answer.json()["closed"] == 1
    assert (await shop.order(order["orderId"]))["status"] == "CANCELLED"


@pytest.mark.parametrize("amount", [0, -1, 10**13, "100", 1.5])
async def test_demo_refund_of_an_amount_no_refund_can_have_is_a_validation_failure(
    shop: Sandboxed, amount: Any
) -> None:
    order = (await shop.client.post("/sandbox/checkout")).json()
    await shop.act(order["paymentId"], "pay", method="CARD")
    await shop.complete(order["paymentId"])

    response = await shop.client.post(
        f"/sandbox/orders/{order['orderId']}/refund", json={"amount": amount}
    )

    assert_validation_failed(response, "amount")
    assert (await shop.emulated(order["paymentId"]))["status"] == "PAID"


@pytest.fixture
async def pre_registering(database_url: str, db: asyncpg.Connection) -> AsyncIterator[Sandboxed]:
    """The sandbox with PORTONE_PRE_REGISTER=true."""
    settings = make_settings(
        database_url,
        portone_mode="sandbox",
        portone_api_base_url=None,
        portone_accept_test_payments=None,
        portone_pre_register=True,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://service.test"
        ) as client,
    ):
        yield Sandboxed(app, client, settings)


async def test_pre_registered_amount_makes_a_tampered_payment_fail_at_portone(
    pre_registering: Sandboxed,
) -> None:
    shop = pre_registering
    order = await create_order(shop.client, AMOUNT)
    await shop.act(order["paymentId"], "pay", method="CARD", amount=TAMPERED)

    response = await shop.complete(order["paymentId"])

    assert (await shop.emulated(order["paymentId"]))["status"] == "FAILED"
    assert response.status_code == 409, response.text
    assert (response.json()["code"], response.json()["portoneStatus"]) == (
        "PAYMENT_NOT_PAID",
        "FAILED",
    )
    assert (await shop.order(order["orderId"]))["status"] == "PENDING"


async def test_pre_registered_amount_lets_the_right_payment_through(
    pre_registering: Sandboxed,
) -> None:
    shop = pre_registering
    order = await create_order(shop.client, AMOUNT)
    await shop.act(order["paymentId"], "pay", method="CARD")

    response = await shop.complete(order["paymentId"])

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "PAID"


@pytest.fixture
async def live(database_url: str, db: asyncpg.Connection) -> AsyncIterator[httpx.AsyncClient]:
    """The service in live mode (the default)."""
    app = create_app(make_settings(database_url))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://service.test"
        ) as client,
    ):
        yield client


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/sandbox/portone/payments/pay_1"),
        ("GET", "/sandbox/portone/payments"),
        ("POST", "/sandbox/portone/payments/pay_1/cancel"),
        ("POST", "/sandbox/payments/pay_1/pay"),
        ("POST", "/sandbox/payments/pay_1/deposit"),
        ("POST", "/sandbox/payments/pay_1/fail"),
        ("POST", "/sandbox/payments/pay_1/cancel"),
        ("POST", "/sandbox/checkout"),
        ("GET", "/sandbox/orders/ord_1"),
        ("POST", "/sandbox/reconcile"),
    ],
)
async def test_live_mode_has_no_sandbox_routes(
    live: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await live.request(method, path, json={})

    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


async def test_live_mode_documents_no_sandbox_routes(live: httpx.AsyncClient) -> None:
    paths = (await live.get("/openapi.json")).json()["paths"]

    assert [path for path in paths if path.startswith("/sandbox") or path == "/"] == []
