"""The sandbox's emulated PortOne, answering where production's PortOne client sends.

respx hands every request to PortOne to the emulator's own API (the one the sandbox
serves), so a test meets a PortOne with state: payments made by the customer, refunds
that go through or not, cancellations PortOne holds and settles, disputes. The webhooks
each change causes are kept, for the test to deliver when it chooses.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import respx

from app import standard_webhooks
from app.sandbox.delivery import webhook_bodies
from app.sandbox.emulator import Emulator
from app.sandbox.payments import EmulatedPayment, PaymentRequest
from app.sandbox.portone_api import emulated_portone
from app.sandbox.state import Sandbox
from tests.helpers import WEBHOOK_SECRET, create_order
from tests.portone_payloads import STORE_ID

SECRET = "portone-test-secret"  # the tests' PORTONE_API_SECRET (tests.helpers)


class EmulatedPortOne:
    def __init__(self, router: respx.MockRouter) -> None:
        self.emulator = Emulator(STORE_ID)
        self.sandbox = Sandbox(self.emulator, self, SECRET)
        self.webhooks: list[bytes] = []
        self.requests: list[httpx.Request] = []
        self.unavailable: set[str] = set()  # paths whose next call meets a 503, unapplied
        self.answer_lost: set[str] = set()  # paths whose next call is applied, answer lost
        # What happens elsewhere while a path's next call is in flight, before PortOne acts.
        self.meanwhile: dict[str, Callable[[], Awaitable[object]]] = {}
        self._api = httpx.ASGITransport(app=emulated_portone(self.sandbox))
        router.route().mock(side_effect=self._answer)

    async def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path in self.unavailable:
            self.unavailable.discard(path)
            return httpx.Response(503)
        if (meanwhile := self.meanwhile.pop(path, None)) is not None:
            await meanwhile()
        response = await self._api.handle_async_request(request)
        if path in self.answer_lost:
            self.answer_lost.discard(path)
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response

    def notify(self, kind: str, payment: EmulatedPayment) -> None:
        for body in webhook_bodies(kind, payment, STORE_ID)[:1]:
            self.webhooks.append(json.dumps(body).encode())

    def calls(self, method: str, suffix: str = "") -> list[httpx.Request]:
        """The requests PortOne received of `method` whose path ends with `suffix`."""
        return [r for r in self.requests if r.method == method and r.url.path.endswith(suffix)]

    # -- the customer, PortOne and the card company -----------------------------------

    def pay(self, order: dict[str, Any], **changes: Any) -> EmulatedPayment:
        """The customer pays for `order` (another `amount` is a tampered payment; with
        `manual=True`, on a channel with manual confirmation: READY, with a token)."""
        payment, kinds = self.emulator.pay(_request(order, **changes))
        self._notify_all(payment, kinds)
        return payment

    async def paid_order(self, client: httpx.AsyncClient) -> dict[str, Any]:
        """An order of 10,000 KRW the customer paid and the browser completed: PAID."""
        order = await create_order(client, amount=10_000)
        self.pay(order)
        response = await client.post("/payments/complete", json={"paymentId": order["paymentId"]})
        assert response.json()["status"] == "PAID", response.text
        return order

    def fail(self, order: dict[str, Any], reason: str = "card declined") -> EmulatedPayment:
        """The customer's attempt to pay for `order` fails."""
        payment, kinds = self.emulator.fail(_request(order), reason)
        self._notify_all(payment, kinds)
        return payment

    def next_cancellation(self, order: dict[str, Any], status: str) -> None:
        self.emulator.answer_next_cancellation(order["paymentId"], status)

    def settle(self, order: dict[str, Any], status: str) -> str:
        """PortOne settles the cancellation it holds REQUESTED; its id."""
        payment = self.emulator.get(order["paymentId"])
        [held] = [c for c in payment.cancellations if c.status == "REQUESTED"]
        payment, kinds = self.emulator.settle(payment.id, held.id, status)
        self._notify_all(payment, kinds)
        return held.id

    def dispute(self, order: dict[str, Any], status: str, reason: str = "fraud") -> None:
        payment, kinds = self.emulator.dispute(order["paymentId"], status, reason)
        self._notify_all(payment, kinds)

    def cancel_in_console(self, order: dict[str, Any], amount: int | None = None) -> None:
        payment, _, kinds = self.emulator.cancel(
            order["paymentId"], amount=amount, reason="cancelled in the console"
        )
        self._notify_all(payment, kinds)

    def _notify_all(self, payment: EmulatedPayment, kinds: list[str]) -> None:
        for kind in kinds:
            self.notify(kind, payment)

    async def deliver_webhooks(self, client: httpx.AsyncClient) -> list[httpx.Response]:
        """Deliver the webhooks PortOne owes so far, signed, to the service."""
        key = standard_webhooks.decode_secret(WEBHOOK_SECRET)
        answers = []
        owed, self.webhooks = self.webhooks, []
        for body in owed:
            headers = standard_webhooks.headers(key, f"msg_{secrets.token_hex(8)}", body)
            answers.append(await client.post("/webhooks/portone", content=body, headers=headers))
        return answers


def _request(order: dict[str, Any], **changes: Any) -> PaymentRequest:
    return PaymentRequest(
        payment_id=order["paymentId"],
        order_name=order["orderName"],
        amount=changes.get("amount", order["amount"]),
        currency=changes.get("currency", order["currency"]),
        method=changes.get("method", "CARD"),
        channel_type=changes.get("channel_type", "LIVE"),
        manual=changes.get("manual", False),
    )
