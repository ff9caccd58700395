"""PortOne's REST API over the sandbox's `Emulator`, with faults injected around each call.

    python -m scripts.chaos.standin --port P --seed K --api-secret S \
        --webhook-secret whsec_… --targets http://127.0.0.1:A,http://127.0.0.1:B

The one module that knows the emulator: it reaches it only through `pay`, `deposit`,
`fail`, `cancel`, `close_virtual_account`, `get`, `list_page` and `payments`, and turns
each change into PortOne's webhooks (`webhooks.Deliveries`). While faults are on, an API
call may answer 5xx or 429, hang past the service's timeout, answer slowly, read stale
(a read), or go through while its answer is lost (a write). The customer's and the
console's doors (`/_control/…`) never fail; `/_control/state` is what the checks compare
the service's orders with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from aiohttp import web

from app.sandbox.delivery import webhook_bodies
from app.sandbox.emulator import EmulatedPayment, Emulator, EmulatorError, PaymentRequest
from app.standard_webhooks import decode_secret
from scripts.chaos.webhooks import Deliveries

STORE_ID = "store-stress"
HANG_SECONDS = 11.0  # past the service's 10 s PortOne timeout

# Probability of each fault per PortOne API call while faults are on.
FAULTS_ANY = (("5xx", 0.07), ("429", 0.05), ("hang", 0.01), ("slow", 0.10))
FAULTS_READ = (("stale", 0.05),)
FAULTS_WRITE = (("lost", 0.08), ("late", 0.03))
WRITES = frozenset({"cancel", "close"})


class StandIn:
    """PortOne's REST API over `Emulator`, with faults, and PortOne's webhooks."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.emulator = Emulator(STORE_ID)
        self.rng = random.Random(args.seed)  # noqa: S311
        self.secret = args.api_secret
        self.webhooks = Deliveries(self.rng, decode_secret(args.webhook_secret), args.targets)
        self.faults_on = True
        self.api_writes: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.console: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.history: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.faults: Counter[str] = Counter()

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes(
            [
                web.get("/payments/{pid}", self.get_payment),
                web.get("/payments", self.list_payments),
                web.post("/payments/{pid}/cancel", self.cancel_payment),
                web.post("/payments/{pid}/virtual-account/close", self.close_virtual_account),
                web.post("/_control/pay", self.control_pay),
                web.post("/_control/fail", self.control_fail),
                web.post("/_control/deposit/{pid}", self.control_deposit),
                web.post("/_control/cancel/{pid}", self.control_cancel),
                web.post("/_control/close/{pid}", self.control_close),
                web.post("/_control/faults", self.control_faults),
                web.get("/_control/state", self.control_state),
            ]
        )
        return app

    # -- faults -------------------------------------------------------------------------

    def _draw(self, operation: str) -> str | None:
        if not self.faults_on:
            return None
        table = list(FAULTS_ANY)
        table += FAULTS_WRITE if operation in WRITES else ()
        table += FAULTS_READ if operation == "get" else ()
        roll, total = self.rng.random(), 0.0
        for name, probability in table:
            total += probability
            if roll < total:
                self.faults[f"{operation}:{name}"] += 1
                return name
        return None

    def _server_error(self) -> web.Response:
        status = self.rng.choice([500, 502, 503, 504])
        if self.rng.random() < 0.5:
            return web.Response(status=status, text="<html>upstream error</html>")
        body = {"type": "INTERNAL_SERVER_ERROR", "message": "stand-in fault"}
        return web.json_response(body, status=status)

    async def _faulty(self, operation: str, answer: Callable[[bool], web.Response]) -> web.Response:
        """`answer(stale)` applies the call; faults fail, delay, or lose it around that."""
        fault = self._draw(operation)
        if fault == "5xx":
            return self._server_error()
        if fault == "429":
            return web.json_response(
                {"type": "TOO_MANY_REQUESTS", "message": "slow down"},
                status=429,
                headers={"Retry-After": "1"},
            )
        if fault == "slow":
            await asyncio.sleep(self.rng.uniform(0.3, 2.5))
        if fault in ("hang", "late"):
            await asyncio.sleep(HANG_SECONDS)
            if fault == "hang" and operation in WRITES:
                return self._server_error()  # never applied; the caller gave up long ago
        response = answer(fault == "stale")
        if fault == "lost" and response.status < 300:
            if self.rng.random() < 0.5:
                return self._server_error()
            await asyncio.sleep(HANG_SECONDS)
        return response

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"PortOne {self.secret}"

    # -- PortOne's API ------------------------------------------------------------------

    async def get_payment(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _portone_error(401, "UNAUTHORIZED", "bad credentials")
        pid = request.match_info["pid"]

        def answer(stale: bool) -> web.Response:
            payment = self.emulator.payments.get(pid)
            if payment is None:
                return _portone_error(404, "PAYMENT_NOT_FOUND", "no such payment")
            earlier = self.history[pid][:-1]
            if stale and earlier:
                return web.json_response(self.rng.choice(earlier))
            return web.json_response(payment.body())

        return await self._faulty("get", answer)

    async def list_payments(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _portone_error(401, "UNAUTHORIZED", "bad credentials")
        try:
            page = self.emulator.list_page(request.query.get("requestBody"))
        except EmulatorError as exc:
            return _emulator_error(exc)

        def answer(stale: bool) -> web.Response:
            return web.json_response(page)

        return await self._faulty("list", answer)

    async def cancel_payment(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _portone_error(401, "UNAUTHORIZED", "bad credentials")
        pid = request.match_info["pid"]
        body = await _json_object(request)
        reason = body.get("reason")
        amount = body.get("amount")
        current = body.get("currentCancellableAmount")
        if not isinstance(reason, str) or not reason or body.get("storeId") != STORE_ID:
            return _portone_error(400, "INVALID_REQUEST", "reason and storeId are required")

        def answer(stale: bool) -> web.Response:
            try:
                payment, cancellation, kind = self.emulator.cancel(
                    pid, amount=amount, reason=reason, current_cancellable_amount=current
                )
            except EmulatorError as exc:
                return _emulator_error(exc)
            self.api_writes[pid].append(
                {"kind": "cancel", "amount": cancellation.amount, "reason": reason}
            )
            self._changed(kind, payment)
            return web.json_response({"cancellation": cancellation.body()})

        return await self._faulty("cancel", answer)

    async def close_virtual_account(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _portone_error(401, "UNAUTHORIZED", "bad credentials")
        pid = request.match_info["pid"]

        def answer(stale: bool) -> web.Response:
            try:
                payment, kind = self.emulator.close_virtual_account(pid)
            except EmulatorError as exc:
                return _emulator_error(exc)
            self.api_writes[pid].append({"kind": "close", "amount": 0, "reason": "close"})
            self._changed(kind, payment)
            return web.json_response({"closedAt": payment.body()["statusChangedAt"]})

        return await self._faulty("close", answer)

    # -- the customer and the console (never faulty) ------------------------------------

    async def control_pay(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        try:
            payment, kind = self.emulator.pay(_payment_request(body))
        except EmulatorError as exc:
            return _emulator_error(exc)
        return web.json_response(self._changed(kind, payment))

    async def control_fail(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        try:
            payment, kind = self.emulator.fail(_payment_request(body), "card declined (stress)")
        except EmulatorError as exc:
            return _emulator_error(exc)
        return web.json_response(self._changed(kind, payment))

    async def control_deposit(self, request: web.Request) -> web.Response:
        try:
            payment, kind = self.emulator.deposit(request.match_info["pid"])
        except EmulatorError as exc:
            return _emulator_error(exc)
        return web.json_response(self._changed(kind, payment))

    async def control_cancel(self, request: web.Request) -> web.Response:
        pid = request.match_info["pid"]
        amount = (await _json_object(request)).get("amount")
        try:
            payment, cancellation, kind = self.emulator.cancel(
                pid, amount=amount, reason="cancelled in the console"
            )
        except EmulatorError as exc:
            return _emulator_error(exc)
        self.console[pid].append({"kind": "cancel", "amount": cancellation.amount})
        return web.json_response(self._changed(kind, payment))

    async def control_close(self, request: web.Request) -> web.Response:
        pid = request.match_info["pid"]
        try:
            payment, kind = self.emulator.close_virtual_account(pid)
        except EmulatorError as exc:
            return _emulator_error(exc)
        self.console[pid].append({"kind": "close", "amount": 0})
        return web.json_response(self._changed(kind, payment))

    async def control_faults(self, request: web.Request) -> web.Response:
        self.faults_on = bool((await _json_object(request)).get("on"))
        return web.json_response({"on": self.faults_on})

    async def control_state(self, request: web.Request) -> web.Response:
        payments = {
            pid: {
                "status": p.status,
                "total": p.total,
                "currency": p.currency,
                "channelType": p.channel_type,
                "storeId": p.store_id,
                "method": p.method,
                "paid": p.paid_at is not None,
                "cancelled": p.cancelled,
                "apiWrites": self.api_writes.get(pid, []),
                "console": self.console.get(pid, []),
            }
            for pid, p in self.emulator.payments.items()
        }
        return web.json_response(
            {
                "payments": payments,
                "faults": dict(self.faults),
                "webhooks": dict(self.webhooks.counts),
                "outstanding": self.webhooks.outstanding,
            }
        )

    def _changed(self, kind: str, payment: EmulatedPayment) -> dict[str, Any]:
        """The payment as it now reads, kept for stale answers; its webhooks are sent."""
        body = payment.body()
        self.history[payment.id].append(body)
        for webhook in webhook_bodies(kind, payment, STORE_ID):
            self.webhooks.send(json.dumps(webhook, ensure_ascii=False).encode())
        return body


def _portone_error(status: int, type_: str, message: str) -> web.Response:
    return web.json_response({"type": type_, "message": message}, status=status)


def _emulator_error(exc: EmulatorError) -> web.Response:
    return _portone_error(exc.status, exc.type, exc.message)


async def _json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _payment_request(body: dict[str, Any]) -> PaymentRequest:
    return PaymentRequest(
        payment_id=body["paymentId"],
        order_name=body["orderName"],
        amount=body["amount"],
        currency=body["currency"],
        method=body.get("method", "CARD"),
        channel_type=body.get("channelType", "LIVE"),
    )


async def serve(args: argparse.Namespace) -> None:
    standin = StandIn(args)
    runner = web.AppRunner(standin.app(), access_log=None, handler_cancellation=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await standin.webhooks.close()
        await runner.cleanup()


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
