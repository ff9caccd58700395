"""PortOne for the stress run: the sandbox's emulated API, behind a layer of faults.

    python -m scripts.chaos.standin --port P --seed K --api-secret S \
        --webhook-secret whsec_… --targets http://127.0.0.1:A,http://127.0.0.1:B

The API itself is the sandbox's (`app.sandbox.portone_api.emulated_portone`), so the
stress run meets the PortOne the sandbox and the tests meet. While faults are on, an
API call may answer 5xx or 429, hang past the service's timeout, answer slowly, read
stale (a read), or go through while its answer is lost (a write: a cancellation, an
account closed, a manual confirmation, each with PortOne's Idempotency-Key). The doors of the
customer, the console, the card company and PortOne's back office (`/_control/…`) never
fail; `/_control/state` is what the checks compare the service's orders with. Every
change is announced by PortOne's webhooks (`webhooks.Deliveries`), late, out of order
and twice; PortOne also announces payments no order has.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
from collections import Counter, defaultdict
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.sandbox.delivery import webhook_bodies
from app.sandbox.emulator import Emulator, EmulatorError
from app.sandbox.payments import EmulatedPayment, PaymentRequest
from app.sandbox.portone_api import emulated_portone
from app.sandbox.state import Sandbox
from app.standard_webhooks import decode_secret
from scripts.chaos.webhooks import Deliveries

STORE_ID = "store-stress"
HANG_SECONDS = 11.0  # past the service's 10 s PortOne timeout
CONSOLE = "cancelled in the console"

# Probability of each fault per PortOne API call while faults are on.
FAULTS_ANY = (("5xx", 0.07), ("429", 0.05), ("hang", 0.01), ("slow", 0.10))
FAULTS_READ = (("stale", 0.05),)
FAULTS_WRITE = (("lost", 0.08), ("late", 0.03))
WRITES = frozenset({"cancel", "close", "confirm"})
# How PortOne answers a cancellation, while faults are on: settled later, or refused.
CANCELLATION_OUTCOMES = (("REQUESTED", 0.15), ("FAILED", 0.08))
SETTLED_FAILED = 0.2  # of the REQUESTED cancellations PortOne settles


class CountingEmulator(Emulator):
    """The emulator, counting how often each confirmation token was charged."""

    def __init__(self, store_id: str) -> None:
        super().__init__(store_id)
        self.charges: Counter[str] = Counter()  # by "paymentId token"

    def confirm(
        self,
        payment_id: str,
        *,
        payment_token: str,
        total_amount: int | None,
        currency: str | None,
        is_test: bool | None,
    ) -> tuple[EmulatedPayment, list[str]]:
        change = super().confirm(
            payment_id,
            payment_token=payment_token,
            total_amount=total_amount,
            currency=currency,
            is_test=is_test,
        )
        self.charges[f"{payment_id} {payment_token}"] += 1
        return change


class Announcer:
    """Told of every change (as the sandbox's webhook sender is): keeps each payment's
    bodies for stale reads, and sends PortOne's webhooks."""

    def __init__(self, deliveries: Deliveries) -> None:
        self.deliveries = deliveries
        self.history: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def notify(self, kind: str, payment: EmulatedPayment) -> None:
        self.history[payment.id].append(payment.body())
        for webhook in webhook_bodies(kind, payment, STORE_ID):
            self.deliveries.send(json.dumps(webhook, ensure_ascii=False).encode())


class Faults:
    """ASGI middleware: PortOne's API calls fail, lag and lose their answers at random."""

    def __init__(
        self, app: ASGIApp, rng: random.Random, announcer: Announcer, emulator: Emulator
    ) -> None:
        self.app = app
        self.rng = rng
        self.announcer = announcer
        self.emulator = emulator
        self.on = True
        self.counts: Counter[str] = Counter()
        self.reads: Counter[str] = Counter()  # the service's reads, by payment
        # The `updatedAt` of the payment as the last read that reached the service showed
        # it (stale or not), by payment.
        self.shown: dict[str, str] = {}
        # Payments whose cancellations PortOne holds REQUESTED: until it refuses them at
        # the final settling (False), or for good (True: a bank that takes days).
        self.held: dict[str, bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        operation = _operation(scope) if scope["type"] == "http" else None
        fault = self._draw(operation) if operation else None
        if operation == "get":
            payment_id = scope["path"].split("/")[2]
            self.reads[payment_id] += 1
            if fault != "hang":  # an answer past the service's timeout reaches nobody
                send = self._noting(payment_id, send)
        if operation == "cancel" and fault not in ("5xx", "429"):
            self._answer_cancellation(scope["path"].split("/")[2])
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault in ("5xx", "429"):
            await self._refuse(fault, scope, receive, send)
            return
        if fault == "slow":
            await asyncio.sleep(self.rng.uniform(0.3, 2.5))
        if fault in ("hang", "late"):
            await asyncio.sleep(HANG_SECONDS)
            if fault == "hang" and operation in WRITES:
                await self._refuse("5xx", scope, receive, send)  # never applied
                return
        if fault == "stale" and (earlier := self._earlier(scope)):
            await JSONResponse(self.rng.choice(earlier))(scope, receive, send)
            return
        if fault == "lost":
            await self._lose_answer(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _noting(self, payment_id: str, send: Send) -> Send:
        """`send`, noting which version of the payment a read answered."""
        answered = {"status": 0}

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered["status"] = message["status"]
            elif message["type"] == "http.response.body" and answered["status"] == 200:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    self.shown[payment_id] = json.loads(message["body"])["updatedAt"]
            await send(message)

        return noting

    def _draw(self, operation: str) -> str | None:
        if not self.on:
            return None
        table = list(FAULTS_ANY)
        table += FAULTS_WRITE if operation in WRITES else ()
        table += FAULTS_READ if operation == "get" else ()
        roll, total = self.rng.random(), 0.0
        for name, probability in table:
            total += probability
            if roll < total:
                self.counts[f"{operation}:{name}"] += 1
                return name
        return None

    def _answer_cancellation(self, payment_id: str) -> None:
        if not self.on or payment_id in self.held:
            return
        roll, total = self.rng.random(), 0.0
        for status, probability in CANCELLATION_OUTCOMES:
            total += probability
            if roll < total:
                with contextlib.suppress(EmulatorError):
                    self.emulator.answer_next_cancellation(payment_id, status)
                    self.counts[f"cancel answered {status}"] += 1
                return

    async def _refuse(self, fault: str, scope: Scope, receive: Receive, send: Send) -> None:
        if fault == "429":
            body = {"type": "TOO_MANY_REQUESTS", "message": "slow down"}
            response: Response = JSONResponse(body, 429, headers={"Retry-After": "1"})
        elif self.rng.random() < 0.5:
            status = self.rng.choice([500, 502, 503, 504])
            response = Response("<html>upstream error</html>", status, media_type="text/html")
        else:
            body = {"type": "INTERNAL_SERVER_ERROR", "message": "stand-in fault"}
            response = JSONResponse(body, self.rng.choice([500, 502, 503, 504]))
        await response(scope, receive, send)

    def _earlier(self, scope: Scope) -> list[dict[str, Any]]:
        payment_id = scope["path"].split("/")[2]
        return self.announcer.history.get(payment_id, [])[:-1]

    async def _lose_answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The write goes through; its answer is a 5xx, or never comes in time."""
        answer: list[Message] = []

        async def keep(message: Message) -> None:
            answer.append(message)

        await self.app(scope, receive, keep)
        status = answer[0]["status"] if answer else 500
        if status >= 300:
            for message in answer:
                await send(message)
        elif self.rng.random() < 0.5:
            await self._refuse("5xx", scope, receive, send)
        else:
            await asyncio.sleep(HANG_SECONDS)
            for message in answer:
                await send(message)


OPERATIONS = {
    ("GET", ""): "list",
    ("GET", "{id}"): "get",
    ("POST", "{id}/cancel"): "cancel",
    ("POST", "{id}/virtual-account/close"): "close",
    ("POST", "{id}/confirm"): "confirm",
}


def _operation(scope: Scope) -> str | None:
    """Which of PortOne's API calls a request is (None for the control doors)."""
    parts = scope["path"].strip("/").split("/")
    if parts[0] != "payments":
        return None
    shape = "/".join(["{id}", *parts[2:]] if len(parts) > 1 else [])
    return OPERATIONS.get((scope["method"], shape))


def stand_in(args: argparse.Namespace) -> tuple[FastAPI, Faults, Deliveries]:
    rng = random.Random(args.seed)  # noqa: S311
    deliveries = Deliveries(rng, decode_secret(args.webhook_secret), args.targets)
    announcer = Announcer(deliveries)
    emulator = CountingEmulator(STORE_ID)
    sandbox = Sandbox(emulator, announcer, args.api_secret)
    app = emulated_portone(sandbox)
    faults = Faults(app, rng, announcer, sandbox.emulator)
    _control_doors(app, sandbox, emulator, faults, deliveries, rng)
    return app, faults, deliveries


def _control_doors(
    app: FastAPI,
    sandbox: Sandbox,
    emulator: CountingEmulator,
    faults: Faults,
    deliveries: Deliveries,
    rng: random.Random,
) -> None:
    async def changed(payment: EmulatedPayment, webhooks: list[str]) -> JSONResponse:
        await sandbox.changed(payment, webhooks)
        return JSONResponse(payment.body())

    @app.post("/_control/pay")
    async def pay(request: Request) -> JSONResponse:
        """The customer pays; on a manual channel the answer carries the `paymentToken`
        the payment window gives the browser (nothing charged until it is confirmed)."""
        payment, webhooks = emulator.pay(_payment_request(await request.json()))
        await sandbox.changed(payment, webhooks)
        return JSONResponse({**payment.body(), "paymentToken": payment.payment_token})

    @app.post("/_control/fail")
    async def fail(request: Request) -> JSONResponse:
        body = await request.json()
        return await changed(*emulator.fail(_payment_request(body), "card declined (stress)"))

    @app.post("/_control/deposit/{payment_id}")
    async def deposit(payment_id: str) -> JSONResponse:
        return await changed(*emulator.deposit(payment_id))

    @app.post("/_control/cancel/{payment_id}")
    async def cancel(payment_id: str, request: Request) -> JSONResponse:
        amount = (await request.json()).get("amount")
        payment, _, webhooks = emulator.cancel(payment_id, amount=amount, reason=CONSOLE)
        return await changed(payment, webhooks)

    @app.post("/_control/close/{payment_id}")
    async def close(payment_id: str) -> JSONResponse:
        payment, webhooks = emulator.close_virtual_account(payment_id)
        payment.cancellations[-1].reason = CONSOLE
        return await changed(payment, webhooks)

    @app.post("/_control/dispute/{payment_id}")
    async def dispute(payment_id: str, request: Request) -> JSONResponse:
        """The card company opens a dispute, or resolves the open one: the payment changes,
        its status and `statusChangedAt` do not."""
        body = await request.json()
        return await changed(*emulator.dispute(payment_id, body["status"], body["reason"]))

    @app.post("/_control/hold/{payment_id}")
    async def hold(payment_id: str, request: Request) -> dict[str, bool]:
        """PortOne answers this payment's cancellations REQUESTED, and refuses them only at
        the end (`forever`: never): FAILED changes neither the payment's status nor its
        `statusChangedAt`, and has no webhook, so only the reconciler's list of refunds
        PortOne holds finds it."""
        forever = bool((await request.json()).get("forever"))
        emulator.answer_next_cancellation(payment_id, "REQUESTED")
        faults.held[payment_id] = forever
        return {"forever": forever}

    @app.post("/_control/orphan")
    async def orphan(request: Request) -> dict[str, str]:
        """PortOne announces a payment no order has: one it holds (paid through another
        door of the store), or one it has no record of."""
        body = await request.json()
        wanted = _payment_request(body)
        if body.get("known"):
            await sandbox.changed(*emulator.pay(wanted))
        else:
            ghost = EmulatedPayment(
                id=wanted.payment_id,
                store_id=STORE_ID,
                order_name=wanted.order_name,
                total=wanted.amount,
                currency=wanted.currency,
                method=wanted.method,
                channel_type=wanted.channel_type,
            )
            for webhook in webhook_bodies("Transaction.Paid", ghost, STORE_ID):
                deliveries.send(json.dumps(webhook).encode())
        return {"paymentId": wanted.payment_id}

    @app.post("/_control/settle")
    async def settle(request: Request) -> dict[str, int]:
        """PortOne settles a `share` of the cancellations it holds REQUESTED; it refuses
        those of held payments, and only when it settles them all."""
        share = float((await request.json()).get("share", 1.0))
        settled = 0
        for payment in list(emulator.payments.values()):
            held = faults.held.get(payment.id)
            if held or (held is not None and share < 1.0):
                continue
            for cancellation in payment.cancellations:
                if cancellation.status != "REQUESTED" or rng.random() >= share:
                    continue
                refused = held is not None or rng.random() < SETTLED_FAILED
                status = "FAILED" if refused else "SUCCEEDED"
                await sandbox.changed(*emulator.settle(payment.id, cancellation.id, status))
                settled += 1
        return {"settled": settled}

    @app.post("/_control/faults")
    async def switch(request: Request) -> dict[str, bool]:
        faults.on = bool((await request.json()).get("on"))
        return {"on": faults.on}

    @app.get("/_control/state")
    async def state() -> dict[str, Any]:
        return {
            "payments": {pid: _state(payment) for pid, payment in emulator.payments.items()},
            "faults": dict(faults.counts),
            "reads": dict(faults.reads),
            "held": faults.held,
            "charges": dict(emulator.charges),
            "shown": faults.shown,
            "webhooks": dict(deliveries.counts),
            "outstanding": deliveries.outstanding,
        }


def _state(payment: EmulatedPayment) -> dict[str, Any]:
    """A payment as the checks read it: what PortOne holds, and who cancelled what."""
    writes: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for cancellation in payment.cancellations:
        kind = "close" if cancellation.id.startswith("close_") else "cancel"
        write = {
            "kind": kind,
            "id": cancellation.id,
            "status": cancellation.status,
            "amount": cancellation.amount,
            "reason": cancellation.reason,
        }
        writes[cancellation.reason == CONSOLE].append(write)
    return {
        "status": payment.status,
        "total": payment.total,
        "currency": payment.currency,
        "channelType": payment.channel_type,
        "storeId": payment.store_id,
        "method": payment.method,
        "paid": payment.paid_at is not None,
        "cancelled": payment.cancelled,
        "apiWrites": writes[False],
        "console": writes[True],
        "disputes": [dispute.body() for dispute in payment.disputes],
        "updatedAt": payment.body()["updatedAt"],
    }


def _payment_request(body: dict[str, Any]) -> PaymentRequest:
    return PaymentRequest(
        payment_id=body["paymentId"],
        order_name=body["orderName"],
        amount=body["amount"],
        currency=body["currency"],
        method=body.get("method", "CARD"),
        channel_type=body.get("channelType", "LIVE"),
        manual=bool(body.get("manual")),
    )


async def serve(args: argparse.Namespace) -> None:
    _, faults, deliveries = stand_in(args)
    config = uvicorn.Config(faults, host="127.0.0.1", port=args.port, log_level="warning")
    try:
        await uvicorn.Server(config).serve()  # until SIGTERM or SIGINT
    finally:
        await deliveries.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.chaos.standin")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--api-secret", required=True)
    parser.add_argument("--webhook-secret", required=True)
    parser.add_argument("--targets", type=lambda value: value.split(","), required=True)
    asyncio.run(serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
