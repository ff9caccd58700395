"""The chaos command: two service processes, one database, and a PortOne that fails at random.

    python3 scripts/stress.py [--orders N] [--seconds S] [--seed K]

Creates a fresh database and migrates it; starts a PortOne stand-in (this file, run as
`stress.py _standin`, keeping its state in `app.sandbox.emulator.Emulator`) that answers
500s, 429s, hangs past the client's timeout, slow answers, stale reads, and cancellations
that go through while their answer is lost (all drawn from the seed); starts two
`python -m app serve` processes in live mode on that database, with a short reconciler
interval and order events delivered to a receiver run here. Then it drives N orders over
S seconds: orders created on either process, customers paying at the stand-in (honest,
tampered, virtual accounts and deposits, failures), concurrent /payments/complete calls
on both processes, signed webhooks sent duplicated and out of order to both, refunds
(full, partial, with and without Idempotency-Key, repeated), console cancellations, and
`python -m app reconcile` passes. Last, it turns every fault off, runs one final reconciler
pass, waits for the webhooks and order events, checks every guarantee of SPEC against
PortOne's final state, and prints the counts. Exit code 0 only when every check holds.

Everything listens on 127.0.0.1; every process started here is stopped on the way out,
on errors and Ctrl-C too. A run with the defaults takes about a minute.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _venv

_venv.enter()
sys.path.insert(0, str(_venv.ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import base64  # noqa: E402
import contextlib  # noqa: E402
import ctypes  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import secrets  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import asyncpg  # noqa: E402
import httpx  # noqa: E402
from aiohttp import web  # noqa: E402

PYTHON = sys.executable
SELF = str(Path(__file__).resolve())
STORE_ID = "store-stress"
HANG_SECONDS = 11.0  # past the service's 10 s PortOne timeout
TERMINAL_WAIT = 60.0

# ---------------------------------------------------------------------------------------
# The PortOne stand-in (a process of its own: `stress.py _standin …`)
# ---------------------------------------------------------------------------------------

# Probability of each fault per PortOne API call while faults are on.
FAULTS_ANY = (("5xx", 0.07), ("429", 0.05), ("hang", 0.01), ("slow", 0.10))
FAULTS_READ = (("stale", 0.05),)
FAULTS_WRITE = (("lost", 0.08), ("late", 0.03))
WRITES = frozenset({"cancel", "close"})
WEBHOOK_ATTEMPTS = 5


class StandIn:
    """PortOne's REST API over `Emulator`, with faults, and PortOne's webhooks."""

    def __init__(self, args: argparse.Namespace) -> None:
        from app.sandbox.emulator import Emulator
        from app.standard_webhooks import decode_secret

        self.emulator = Emulator(STORE_ID)
        self.rng = random.Random(args.seed)  # noqa: S311
        self.secret = args.api_secret
        self.key = decode_secret(args.webhook_secret)
        self.targets: list[str] = args.targets.split(",")
        self.faults_on = True
        self.api_writes: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.console: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.history: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.faults: Counter[str] = Counter()
        self.webhooks: Counter[str] = Counter()
        self.outstanding = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=3.0))

    # -- the app ------------------------------------------------------------------------

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
        from app.sandbox.emulator import EmulatorError

        try:
            page = self.emulator.list_page(request.query.get("requestBody"))
        except EmulatorError as exc:
            return _portone_error(exc.status, exc.type, exc.message)

        def answer(stale: bool) -> web.Response:
            return web.json_response(page)

        return await self._faulty("list", answer)

    async def cancel_payment(self, request: web.Request) -> web.Response:
        from app.sandbox.emulator import EmulatorError

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
                return _portone_error(exc.status, exc.type, exc.message)
            self.api_writes[pid].append(
                {"kind": "cancel", "amount": cancellation.amount, "reason": reason}
            )
            self._changed(kind, payment)
            return web.json_response({"cancellation": cancellation.body()})

        return await self._faulty("cancel", answer)

    async def close_virtual_account(self, request: web.Request) -> web.Response:
        from app.sandbox.emulator import EmulatorError

        if not self._authorized(request):
            return _portone_error(401, "UNAUTHORIZED", "bad credentials")
        pid = request.match_info["pid"]

        def answer(stale: bool) -> web.Response:
            try:
                payment, kind = self.emulator.close_virtual_account(pid)
            except EmulatorError as exc:
                return _portone_error(exc.status, exc.type, exc.message)
            self.api_writes[pid].append({"kind": "close", "amount": 0, "reason": "close"})
            self._changed(kind, payment)
            return web.json_response({"closedAt": payment.body()["statusChangedAt"]})

        return await self._faulty("close", answer)

    # -- the customer and the console (never faulty) ------------------------------------

    async def control_pay(self, request: web.Request) -> web.Response:
        from app.sandbox.emulator import EmulatorError

        body = await _json_object(request)
        try:
            payment, kind = self.emulator.pay(_payment_request(body))
        except EmulatorError as exc:
            return _portone_error(exc.status, exc.type, exc.message)
        self._changed(kind, payment)
        return web.json_response(payment.body())

    async def control_fail(self, request: web.Request) -> web.Response:
        from app.sandbox.emulator import EmulatorError

        body = await _json_object(request)
        try:
            payment, kind = self.emulator.fail(_payment_request(body), "card declined (stress)")
        except EmulatorError as exc:
            return _portone_error(exc.status, exc.type, exc.message)
        self._changed(kind, payment)
        return web.json_response(payment.body())

    async def control_deposit(self, request: web.Request) -> web.Response:
        from app.sandbox.emulator import EmulatorError

        try:
            payment, kind = self.emulator.deposit(request.match_info["pid"])
        except EmulatorError as exc:
            return _portone_error(exc.status, exc.type, exc.message)
        self._changed(kind, payment)
        return web.json_response(payment.body())

    async def control_cancel(self, request: web.Request) -> web.Response:
        from app.sandbox.emulator import EmulatorError

        pid = request.match_info["pid"]
        amount = (await _json_object(request)).get("amount")
        try:
            payment, cancellation, kind = self.emulator.cancel(
                pid, amount=amount, reason="cancelled in the console"
            )
        except EmulatorError as exc:
            return _portone_error(exc.status, exc.type, exc.message)
        self.console[pid].append({"kind": "cancel", "amount": cancellation.amount})
        self._changed(kind, payment)
        return web.json_response(payment.body())

    async def control_close(self, request: web.Request) -> web.Response:
        from app.sandbox.emulator import EmulatorError

        pid = request.match_info["pid"]
        try:
            payment, kind = self.emulator.close_virtual_account(pid)
        except EmulatorError as exc:
            return _portone_error(exc.status, exc.type, exc.message)
        self.console[pid].append({"kind": "close", "amount": 0})
        self._changed(kind, payment)
        return web.json_response(payment.body())

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
                "webhooks": dict(self.webhooks),
                "outstanding": self.outstanding,
            }
        )

    # -- webhooks -----------------------------------------------------------------------

    def _changed(self, kind: str, payment: Any) -> None:
        from app.sandbox.delivery import webhook_bodies

        self.history[payment.id].append(payment.body())
        for body in webhook_bodies(kind, payment, STORE_ID):
            raw = json.dumps(body, ensure_ascii=False).encode()
            self.outstanding += 1
            self.idle.clear()
            task = asyncio.create_task(self._deliver(raw))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _deliver(self, body: bytes) -> None:
        """Out of order (a random delay), to one process or both, sometimes again later."""
        webhook_id = "msg_" + secrets.token_hex(12)
        try:
            await asyncio.sleep(self.rng.uniform(0.0, 1.5))
            targets = [self.rng.choice(self.targets)]
            if self.rng.random() < 0.35:
                targets = list(self.targets)
                self.webhooks["sent to both processes"] += 1
            await asyncio.gather(*(self._send(target, webhook_id, body) for target in targets))
            if self.rng.random() < 0.15:
                self.webhooks["sent again later"] += 1
                await asyncio.sleep(self.rng.uniform(0.2, 3.0))
                await self._send(self.rng.choice(self.targets), webhook_id, body)
        finally:
            self.outstanding -= 1
            if self.outstanding == 0:
                self.idle.set()

    async def _send(self, target: str, webhook_id: str, body: bytes) -> None:
        from app.standard_webhooks import sign

        for attempt in range(WEBHOOK_ATTEMPTS):
            timestamp = int(time.time())
            headers = {
                "content-type": "application/json",
                "webhook-id": webhook_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(self.key, webhook_id, timestamp, body),
            }
            try:
                response = await self.http.post(
                    f"{target}/webhooks/portone", content=body, headers=headers
                )
                self.webhooks[f"answered {response.status_code}"] += 1
                if response.is_success:
                    return
            except httpx.HTTPError as exc:
                self.webhooks[f"failed {type(exc).__name__}"] += 1
            await asyncio.sleep(0.5 * 2**attempt)
        self.webhooks["abandoned"] += 1


def _portone_error(status: int, type_: str, message: str) -> web.Response:
    return web.json_response({"type": type_, "message": message}, status=status)


async def _json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _payment_request(body: dict[str, Any]) -> Any:
    from app.sandbox.emulator import PaymentRequest

    return PaymentRequest(
        payment_id=body["paymentId"],
        order_name=body["orderName"],
        amount=body["amount"],
        currency=body["currency"],
        method=body.get("method", "CARD"),
        channel_type=body.get("channelType", "LIVE"),
    )


async def run_standin(args: argparse.Namespace) -> None:
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
        for task in standin.tasks:
            task.cancel()
        await standin.http.aclose()
        await runner.cleanup()


# ---------------------------------------------------------------------------------------
# The receiver of order events
# ---------------------------------------------------------------------------------------


class EventReceiver:
    """ORDER_EVENTS_URL: verifies Standard Webhooks signatures, fails some first attempts."""

    def __init__(self, secret: str, seed: int) -> None:
        from standardwebhooks import Webhook

        self.webhook = Webhook(secret)
        self.rng = random.Random(seed)  # noqa: S311
        self.faults_on = True
        self.failed_once: set[str] = set()
        self.accepted: list[tuple[str, str, str, str]] = []  # (id, orderId, type, status)
        self.bad_signatures = 0
        self.answered: Counter[str] = Counter()
        self.runner: web.AppRunner | None = None

    async def start(self, port: int) -> None:
        app = web.Application()
        app.add_routes([web.post("/order-events", self.receive)])
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            payload = self.webhook.verify(body, dict(request.headers))
        except Exception:
            self.bad_signatures += 1
            return web.Response(status=400)
        event_id = request.headers["webhook-id"]
        if self.faults_on and event_id not in self.failed_once:
            roll = self.rng.random()
            if roll < 0.10:
                self.failed_once.add(event_id)
                self.answered["500"] += 1
                return web.Response(status=500)
            if roll < 0.15:
                await asyncio.sleep(self.rng.uniform(0.2, 1.0))
        data = payload.get("data") or {}
        self.accepted.append(
            (event_id, str(data.get("orderId")), str(payload.get("type")), str(data.get("status")))
        )
        self.answered["204"] += 1
        return web.Response(status=204)


# ---------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Linux: a child gets SIGTERM when this process dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Processes:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Path:
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            self.running[name] = subprocess.Popen(
                argv,
                env=env,
                cwd=_venv.ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        return log

    def check_alive(self) -> None:
        for name, process in self.running.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; see {self.logs}")

    def stop_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 15
        for process in self.running.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# ---------------------------------------------------------------------------------------
# The chaos
# ---------------------------------------------------------------------------------------

SCENARIOS = {
    "card": 44,
    "va_deposit": 12,
    "va_waiting": 4,
    "va_closed": 4,
    "tampered_amount": 8,
    "tampered_currency": 3,
    "test_channel": 3,
    "va_tampered": 5,
    "fail": 4,
    "fail_then_card": 6,
    "no_payment": 4,
}
HONEST = frozenset({"card", "va_deposit", "va_waiting", "va_closed", "fail_then_card"})
TAMPERED = frozenset({"tampered_amount", "tampered_currency", "test_channel", "va_tampered"})


@dataclass
class Plan:
    index: int
    order_id: str
    payment_id: str
    amount: int
    scenario: str


@dataclass
class Tally:
    answers: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    wrong_answers: list[str] = field(default_factory=list)
    keyed_reasons: set[str] = field(default_factory=set)
    reconcile_runs: Counter[str] = field(default_factory=Counter)


class Chaos:
    def __init__(
        self, args: argparse.Namespace, services: list[str], standin: str, token: str
    ) -> None:
        self.args = args
        self.services = services
        self.standin = standin
        self.internal = {"Authorization": f"Bearer {token}"}
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(45.0, connect=5.0),
            limits=httpx.Limits(max_connections=400, max_keepalive_connections=100),
        )
        self.plans: dict[str, Plan] = {}
        self.tally = Tally()
        self.flows_unfinished = 0

    async def close(self) -> None:
        await self.http.aclose()

    # -- calls --------------------------------------------------------------------------

    async def call(
        self, label: str, method: str, url: str, **kwargs: Any
    ) -> tuple[int, dict[str, Any]]:
        try:
            response = await self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            self.tally.answers[f"{label} {type(exc).__name__}"] += 1
            return 0, {}
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        code = body.get("code", "")
        self.tally.answers[f"{label} {response.status_code} {code}".rstrip()] += 1
        if response.status_code >= 500 and response.status_code != 503 and code != "REFUND_FAILED":
            self.tally.server_errors.append(f"{label} {response.status_code} {response.text[:200]}")
        return response.status_code, body

    async def drain(self, seconds: float = TERMINAL_WAIT) -> int:
        """Wait until the stand-in has delivered (or given up on) every webhook it owes."""
        deadline = time.monotonic() + seconds
        while True:
            outstanding: int = (await self.http.get(f"{self.standin}/_control/state")).json()[
                "outstanding"
            ]
            if outstanding == 0 or time.monotonic() > deadline:
                return outstanding
            await asyncio.sleep(0.5)

    async def control(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        response = await self.http.post(f"{self.standin}/_control/{path}", json=body or {})
        return response.status_code, response.json()

    def service(self, rng: random.Random) -> str:
        return rng.choice(self.services)

    # -- one order's life ---------------------------------------------------------------

    async def order_flow(self, index: int, start_at: float) -> None:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        rng = random.Random(f"{self.args.seed}:{index}")  # noqa: S311
        amount = rng.randrange(1_000, 300_000, 100)
        plan = await self.create_order(rng, index, amount)
        if plan is None:
            return
        scenario = plan.scenario
        pay = {
            "paymentId": plan.payment_id,
            "orderName": f"Stress item {index}",
            "amount": amount,
            "currency": "KRW",
        }
        if scenario == "no_payment":
            await self.complete(rng, plan, max_calls=1)
            return
        if scenario in ("fail", "fail_then_card"):
            await self.control("fail", pay)
            await self.complete(rng, plan)
            if scenario == "fail":
                return
            await asyncio.sleep(rng.uniform(0.2, 2.0))
        if scenario in ("va_deposit", "va_waiting", "va_closed", "va_tampered"):
            pay["method"] = "VIRTUAL_ACCOUNT"
        if scenario in ("tampered_amount", "va_tampered"):
            pay["amount"] = rng.choice([100, amount - 100, amount + 100, amount * 10, 0])
        if scenario == "tampered_currency":
            pay["currency"] = "USD"
        if scenario == "test_channel":
            pay["channelType"] = "TEST"
        await self.control("pay", pay)
        await self.complete(rng, plan)
        if scenario in ("va_deposit", "va_tampered", "va_closed"):
            await asyncio.sleep(rng.uniform(0.3, 4.0))
            if scenario == "va_closed":
                await self.control(f"close/{plan.payment_id}")
                return
            if scenario == "va_tampered" and rng.random() < 0.5:
                return
            await self.control(f"deposit/{plan.payment_id}")
            if rng.random() < 0.3:
                await self.complete(rng, plan, max_calls=1)
        if scenario in ("card", "va_deposit", "fail_then_card"):
            await self.after_payment(rng, plan)

    async def create_order(self, rng: random.Random, index: int, amount: int) -> Plan | None:
        body = {
            "orderName": f"Stress item {index}",
            "amount": amount,
            "currency": "KRW",
            "metadata": {"stress": index},
        }
        headers = dict(self.internal)
        copies = 1
        if rng.random() < 0.3:
            headers["Idempotency-Key"] = f"create-{self.args.seed}-{index}"
            copies = rng.choice([2, 3])
        answers = await asyncio.gather(
            *(
                self.call(
                    "create", "POST", f"{self.service(rng)}/orders", json=body, headers=headers
                )
                for _ in range(copies)
            )
        )
        ids = {answer["orderId"] for status, answer in answers if status in (200, 201)}
        if len(ids) > 1:
            self.tally.wrong_answers.append(f"one Idempotency-Key created orders {sorted(ids)}")
        if not ids:
            return None
        order = next(answer for status, answer in answers if status in (200, 201))
        scenario = rng.choices(list(SCENARIOS), weights=list(SCENARIOS.values()))[0]
        plan = Plan(index, order["orderId"], order["paymentId"], amount, scenario)
        self.plans[plan.order_id] = plan
        return plan

    async def complete(self, rng: random.Random, plan: Plan, max_calls: int = 4) -> None:
        """The browser's calls: none, one, or several at once, to both processes."""
        calls = min(max_calls, rng.choice([0, 1, 2, 2, 3, 4]))

        async def one() -> None:
            await asyncio.sleep(rng.uniform(0.0, 0.6))
            for attempt in range(3):
                status, body = await self.call(
                    "complete",
                    "POST",
                    f"{self.service(rng)}/payments/complete",
                    json={"paymentId": plan.payment_id},
                )
                self.judge_completion(plan, status, body)
                if status not in (0, 503):
                    return
                await asyncio.sleep(0.5 + attempt)

        await asyncio.gather(*(one() for _ in range(calls)))

    def judge_completion(self, plan: Plan, status: int, body: dict[str, Any]) -> None:
        code = body.get("code")
        what = f"{plan.scenario} order {plan.order_id}: /payments/complete answered {status}"
        if status == 200 and plan.scenario in TAMPERED:
            self.tally.wrong_answers.append(f"{what} {body.get('status')} for a tampered payment")
        if status == 200 and body.get("status") not in ("PAID", "AWAITING_DEPOSIT"):
            self.tally.wrong_answers.append(f"{what} with status {body.get('status')}")
        if code == "PAYMENT_REJECTED" and plan.scenario in HONEST:
            self.tally.wrong_answers.append(f"{what} PAYMENT_REJECTED for an honest payment")

    async def wait_paid(self, rng: random.Random, plan: Plan) -> dict[str, Any] | None:
        for _ in range(10):
            status, order = await self.call(
                "get", "GET", f"{self.service(rng)}/orders/{plan.order_id}", headers=self.internal
            )
            if status == 200 and order.get("status") in ("PAID", "PARTIALLY_REFUNDED"):
                return order
            await asyncio.sleep(0.5)
        return None

    async def after_payment(self, rng: random.Random, plan: Plan) -> None:
        roll = rng.random()
        if roll < 0.55:
            return
        order = await self.wait_paid(rng, plan)
        left = plan.amount - (order or {}).get("refundedAmount", 0)
        tag = f"{self.args.seed}-{plan.index}"
        if roll < 0.62:  # a console cancellation, partial or full, then maybe a refund
            amount = rng.choice([None, max(1, left // 3)])
            await self.control(f"cancel/{plan.payment_id}", {"amount": amount})
            if amount is not None and rng.random() < 0.5:
                await asyncio.sleep(rng.uniform(0.0, 1.5))
                await self.refund(rng, plan, None, key=f"after-console-{tag}", copies=2)
            return
        kind = rng.choice(["full-key", "partial-key", "partials", "full-twice", "two-keys"])
        if kind == "full-key":
            await self.refund(rng, plan, None, key=f"full-{tag}", copies=rng.choice([2, 3]))
        elif kind == "partial-key":
            part = rng.randint(1, max(1, left - 1))
            await self.refund(rng, plan, part, key=f"part-{tag}", copies=rng.choice([1, 2, 3]))
        elif kind == "partials":
            part = max(1, left // 4)
            await asyncio.gather(*(self.refund(rng, plan, part, key=None) for _ in range(3)))
        elif kind == "full-twice":
            await self.refund(rng, plan, None, key=None, repeat=2)
        else:
            part = max(1, left // 2)
            await asyncio.gather(
                self.refund(rng, plan, part, key=f"a-{tag}", copies=2),
                self.refund(rng, plan, part, key=f"b-{tag}", copies=2),
            )

    async def refund(
        self,
        rng: random.Random,
        plan: Plan,
        amount: int | None,
        *,
        key: str | None,
        copies: int = 1,
        repeat: int = 1,
    ) -> None:
        """One refund intent: `copies` at once (same key), retried like a careful client."""
        if key is not None:
            reason = f"K:{key}"
            self.tally.keyed_reasons.add(reason)
        else:
            reason = f"N:{plan.index}:{secrets.token_hex(3)}"
        body: dict[str, Any] = {"reason": reason}
        if amount is not None:
            body["amount"] = amount
        headers = dict(self.internal) | ({"Idempotency-Key": key} if key else {})
        url = f"/orders/{plan.order_id}/refund"

        async def one() -> None:
            for attempt in range(4 if key else 1):
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                status, answer = await self.call(
                    "refund", "POST", self.service(rng) + url, json=body, headers=headers
                )
                retry = status in (0, 503) or answer.get("code") == "REFUND_IN_PROGRESS"
                if not retry:
                    return
                await asyncio.sleep(1.0 + attempt)

        for _ in range(repeat):
            await asyncio.gather(*(one() for _ in range(copies)))

    # -- background: `python -m app reconcile` ------------------------------------------

    async def reconcile_cli(self, env: dict[str, str]) -> dict[str, Any] | None:
        process = await asyncio.create_subprocess_exec(
            PYTHON,
            "-m",
            "app",
            "reconcile",
            env=env,
            cwd=_venv.ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        try:
            out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise
        self.tally.reconcile_runs[f"exit {process.returncode}"] += 1
        lines = out.decode().strip().splitlines()
        with contextlib.suppress(ValueError, IndexError):
            summary: dict[str, Any] = json.loads(lines[-1])
            if summary.get("skipped"):
                self.tally.reconcile_runs["skipped"] += 1
            return summary
        return None

    async def reconcile_loop(self, env: dict[str, str], until: float) -> None:
        period = max(4.0, self.args.seconds / 6)
        while time.monotonic() + period < until:
            await asyncio.sleep(period)
            await self.reconcile_cli(env)

    # -- the run ------------------------------------------------------------------------

    def _start_offset(self, index: int, window: float) -> float:
        return random.Random(f"{self.args.seed}:{index}:start").uniform(0, window)  # noqa: S311

    async def drive(self, env: dict[str, str]) -> None:
        started = time.monotonic()
        window = self.args.seconds * 0.6
        flows = [
            asyncio.create_task(self.order_flow(i, started + self._start_offset(i, window)))
            for i in range(self.args.orders)
        ]
        reconciling = asyncio.create_task(self.reconcile_loop(env, started + self.args.seconds))
        deadline = started + self.args.seconds + 20
        try:
            done, pending = await asyncio.wait(flows, timeout=max(1.0, deadline - time.monotonic()))
            self.flows_unfinished = len(pending)
            for task in done:
                if (error := task.exception()) is not None:
                    raise error
            await reconciling
        finally:  # on errors and Ctrl-C too: nothing of ours keeps running
            for task in [*flows, reconciling]:
                task.cancel()
            await asyncio.gather(*flows, reconciling, return_exceptions=True)


# ---------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------

PAID_LIKE = frozenset({"PAID", "PARTIALLY_REFUNDED", "REFUNDED"})
LEGAL = frozenset(
    {
        ("PENDING", "AWAITING_DEPOSIT"),
        ("PENDING", "PAID"),
        ("AWAITING_DEPOSIT", "PAID"),
        ("PENDING", "REJECTED"),
        ("AWAITING_DEPOSIT", "REJECTED"),
        ("PENDING", "CANCELLED"),
        ("AWAITING_DEPOSIT", "CANCELLED"),
        ("PAID", "PARTIALLY_REFUNDED"),
        ("PAID", "REFUNDED"),
        ("PARTIALLY_REFUNDED", "REFUNDED"),
        # a PAID never seen, already partly cancelled (app.payments.rules)
        ("PENDING", "PARTIALLY_REFUNDED"),
        ("AWAITING_DEPOSIT", "PARTIALLY_REFUNDED"),
    }
)
COMPENSATION_REASON = "payment failed verification"


def expected(order: asyncpg.Record, payment: dict[str, Any] | None) -> tuple[set[str], str | None]:
    """The statuses SPEC allows for this order given PortOne's final payment, and the reason."""
    if payment is None or payment["status"] in ("READY", "PAY_PENDING", "FAILED"):
        return {"PENDING"}, None
    reason = None
    if payment["storeId"] != STORE_ID:
        reason = "STORE_MISMATCH"
    elif payment["currency"] != order["currency"]:
        reason = "CURRENCY_MISMATCH"
    elif payment["total"] != order["amount"]:
        reason = "AMOUNT_MISMATCH"
    elif payment["channelType"] != "LIVE":
        reason = "TEST_CHANNEL"
    if reason is not None:
        return {"REJECTED"}, reason
    status = payment["status"]
    if status == "VIRTUAL_ACCOUNT_ISSUED":
        return {"AWAITING_DEPOSIT"}, None
    if status == "PAID":
        return {"PAID"}, None
    if status == "PARTIAL_CANCELLED":
        return {"PARTIALLY_REFUNDED"}, None
    if status == "CANCELLED":
        # Paid and cancelled before the service saw it paid: CANCELLED by the table.
        return ({"REFUNDED", "CANCELLED"} if payment["paid"] else {"CANCELLED"}), None
    return {f"(PortOne status {status})"}, None


@dataclass
class Report:
    counts: dict[str, int]
    problems: list[str]
    info: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.problems


CHECKS = (
    "orders disagreeing with PortOne",
    "repeated or illegal transitions",
    "rejected payments not cancelled exactly once",
    "cancels of payments that were not rejected",
    "refunds beyond what was paid",
    "refunds per Idempotency-Key beyond one",
    "refunds recorded that PortOne never made",
    "order events not delivered",
    "order events out of order or unknown",
    "outbox events not one per change",
    "bad order-event signatures",
    "5xx answers other than 503",
    "wrong answers to callers",
    "unhandled errors in service logs",
)


async def check(
    dsn: str,
    state: dict[str, Any],
    receiver: EventReceiver,
    chaos: Chaos,
    logs: list[Path],
) -> Report:
    connection = await asyncpg.connect(dsn)
    try:
        orders = await connection.fetch("SELECT * FROM orders ORDER BY created_at, id")
        events = await connection.fetch("SELECT * FROM order_history ORDER BY id")
        outbox = await connection.fetch("SELECT * FROM outbox_events ORDER BY seq")
        refunds = await connection.fetch("SELECT * FROM refunds")
        deliveries = await connection.fetch(
            "SELECT status, count(*) AS n FROM webhook_deliveries GROUP BY status"
        )
    finally:
        await connection.close()
    payments: dict[str, dict[str, Any]] = state["payments"]
    found: dict[str, list[str]] = defaultdict(list)

    def problem(check_name: str, text: str) -> None:
        found[check_name].append(text)

    transitions: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for event in events:
        if event["from_status"] != event["to_status"]:
            transitions[event["order_id"]].append((event["from_status"], event["to_status"]))
    outbox_by_order: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for row in outbox:
        outbox_by_order[row["order_id"]].append(row)

    statuses: Counter[str] = Counter()
    for order in orders:
        oid, payment = order["id"], payments.get(order["payment_id"])
        statuses[order["status"]] += 1
        allowed, reason = expected(order, payment)
        cancelled = payment["cancelled"] if payment else 0
        if (
            order["status"] not in allowed
            or order["refunded_amount"] != cancelled
            or (order["status"] == "REJECTED" and order["rejection_reason"] != reason)
        ):
            problem(
                "orders disagreeing with PortOne",
                f"{oid}: {order['status']} refunded {order['refunded_amount']}"
                f" rejection {order['rejection_reason']}; PortOne"
                f" {payment and {k: payment[k] for k in ('status', 'total', 'cancelled')}}"
                f" expects {sorted(allowed)} {reason or ''}",
            )
        chain = transitions[oid]
        previous = "PENDING"
        for pair in chain:
            if pair not in LEGAL or pair[0] != previous:
                problem("repeated or illegal transitions", f"{oid}: {chain}")
                break
            previous = pair[1]
        if len(set(chain)) != len(chain):
            problem("repeated or illegal transitions", f"{oid}: repeated {chain}")
        if previous != order["status"]:
            problem("repeated or illegal transitions", f"{oid}: {chain} ends {order['status']}")
        kinds = [row["type"] for row in outbox_by_order[oid]]
        if kinds != [f"order.{to.lower()}" for _, to in chain]:
            problem("outbox events not one per change", f"{oid}: {kinds} for {chain}")
        # money
        writes = payment["apiWrites"] if payment else []
        compensations = [
            w for w in writes if w["kind"] == "close" or w["reason"].startswith(COMPENSATION_REASON)
        ]
        if order["status"] == "REJECTED" and payment is not None:
            # A paid 0 has nothing to cancel (an issued account of 0 is still closed).
            owed = {1} if payment["total"] > 0 else {0, 1}
            if len(compensations) not in owed or order["compensation_status"] != "DONE":
                problem(
                    "rejected payments not cancelled exactly once",
                    f"{oid}: {len(compensations)} cancels, compensation"
                    f" {order['compensation_status']}, PortOne {payment['status']}"
                    f" {payment['total']} {payment['currency']}",
                )
        elif compensations:
            problem("cancels of payments that were not rejected", f"{oid}: {compensations}")
        # A rejected payment's refundedAmount mirrors PortOne's, whatever was tampered.
        beyond_order = order["status"] != "REJECTED" and order["refunded_amount"] > order["amount"]
        if payment is not None and (cancelled > payment["total"] or beyond_order):
            problem("refunds beyond what was paid", f"{oid}: {cancelled} of {payment['total']}")

    made: Counter[str] = Counter()
    for payment in payments.values():
        for write in payment["apiWrites"]:
            made[write["reason"]] += 1
    for reason in chaos.tally.keyed_reasons:
        if made[reason] > 1:
            problem("refunds per Idempotency-Key beyond one", f"{reason}: {made[reason]} cancels")
    recorded: Counter[str] = Counter(r["reason"] for r in refunds if r["status"] == "SUCCEEDED")
    for reason, count in recorded.items():
        if count > made[reason]:
            problem(
                "refunds recorded that PortOne never made",
                f"{reason}: {count} SUCCEEDED rows, {made[reason]} cancellations at PortOne",
            )

    # order events
    first_seen: dict[str, int] = {}
    seen_count: Counter[str] = Counter()
    redelivered: list[str] = []
    for position, (event_id, _, _, _) in enumerate(receiver.accepted):
        first_seen.setdefault(event_id, position)
        seen_count[event_id] += 1
    outbox_ids = {row["id"] for row in outbox}
    for row in outbox:
        if row["state"] != "delivered" or row["id"] not in first_seen:
            problem("order events not delivered", f"{row['id']} ({row['type']}): {row['state']}")
    for event_id, count in seen_count.items():
        if count > 1:  # at least once: allowed, but only a failed bookkeeping write causes it
            redelivered.append(f"{event_id}: {count} times")
        if event_id not in outbox_ids:
            problem("order events out of order or unknown", f"{event_id}: not in the outbox")
    for oid, rows in outbox_by_order.items():
        arrivals = [first_seen[r["id"]] for r in rows if r["id"] in first_seen]
        if arrivals != sorted(arrivals):
            problem("order events out of order or unknown", f"{oid}: arrived out of order")
    if receiver.bad_signatures:
        problem("bad order-event signatures", f"{receiver.bad_signatures} deliveries")

    for line in chaos.tally.server_errors:
        problem("5xx answers other than 503", line)
    for line in chaos.tally.wrong_answers:
        problem("wrong answers to callers", line)
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            if '"level": "error"' in line.lower() or "Traceback" in line:
                problem("unhandled errors in service logs", f"{log.name}: {line[:300]}")

    counts = {
        "orders checked": len(orders),
        **{name: len(found.get(name, [])) for name in CHECKS[:7]},
        "order events (outbox rows)": len(outbox),
        "order events delivered (distinct webhook-ids)": len(first_seen),
        "order events redelivered (allowed: at least once)": len(redelivered),
        **{name: len(found.get(name, [])) for name in CHECKS[7:]},
    }
    problems = [f"{name}: {text}" for name in CHECKS for text in found.get(name, [])]
    info = {
        "final statuses": dict(sorted(statuses.items())),
        "scenarios": dict(Counter(p.scenario for p in chaos.plans.values()).most_common()),
        "transitions": sum(len(chain) for chain in transitions.values()),
        "order flows cut off at the deadline": chaos.flows_unfinished,
        "PortOne faults injected": sum(state["faults"].values()),
        "PortOne faults by kind": dict(sorted(state["faults"].items())),
        "PortOne webhooks": dict(sorted(state["webhooks"].items())),
        "webhook deliveries stored": {r["status"]: r["n"] for r in deliveries},
        "order-event receiver answers": dict(receiver.answered),
        "reconcile CLI runs": dict(chaos.tally.reconcile_runs),
        "answers to callers": dict(sorted(chaos.tally.answers.items())),
    }
    return Report(counts, problems, info)


# ---------------------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------------------


def _free_port() -> int:
    from tests.live_server import free_port

    return free_port()


def _whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


async def _wait_http(url: str, processes: Processes, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            processes.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")
            await asyncio.sleep(0.2)


async def _outbox_settled(dsn: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    connection = await asyncpg.connect(dsn)
    try:
        while time.monotonic() < deadline:
            left = await connection.fetchval(
                "SELECT count(*) FROM outbox_events WHERE state <> 'delivered'"
            )
            if left == 0:
                return
            await asyncio.sleep(0.5)
    finally:
        await connection.close()


def _print_report(report: Report, args: argparse.Namespace, seconds: float) -> None:
    print(f"\nstress: seed {args.seed}, {args.orders} orders, {seconds:.0f} s in all", flush=True)
    for name, value in report.info.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k}: {v}" for k, v in value.items())
            print(f"  {name}: {inner}")
        else:
            print(f"  {name}: {value}")
    print()
    width = max(len(name) for name in report.counts)
    for name, value in report.counts.items():
        print(f"  {name:<{width}}  {value:>6}")
    if report.problems:
        print(f"\nFAILED: {len(report.problems)} problems")
        for line in report.problems[:60]:
            print(f"  - {line}")
        if len(report.problems) > 60:
            print(f"  … and {len(report.problems) - 60} more")
    else:
        print("\nOK: every check holds")
    print("RESULT " + json.dumps({"ok": report.ok, **report.counts}), flush=True)


async def run(args: argparse.Namespace, database_url: str) -> int:
    from sqlalchemy.engine import make_url

    began = time.monotonic()
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    logs = Path(tempfile.mkdtemp(prefix="stress-logs-"))
    processes = Processes(logs)
    token, api_secret = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    webhook_secret, events_secret = _whsec(), _whsec()
    standin_port, receiver_port = _free_port(), _free_port()
    ports = [_free_port(), _free_port()]
    services = [f"http://127.0.0.1:{port}" for port in ports]
    standin = f"http://127.0.0.1:{standin_port}"
    receiver = EventReceiver(events_secret, args.seed + 2)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PORTONE_", "ORDER_"))},
        "PORTONE_MODE": "live",
        "DATABASE_URL": database_url,
        "PORTONE_API_BASE_URL": standin,
        "PORTONE_API_SECRET": api_secret,
        "PORTONE_STORE_ID": STORE_ID,
        "PORTONE_WEBHOOK_SECRETS": webhook_secret,
        "PORTONE_ACCEPT_TEST_PAYMENTS": "false",
        "INTERNAL_API_TOKEN": token,
        "RECONCILE_INTERVAL_SECONDS": "2",
        "ORDER_EVENTS_URL": f"http://127.0.0.1:{receiver_port}/order-events",
        "ORDER_EVENTS_SECRET": events_secret,
        "LOG_LEVEL": "WARNING",
    }
    chaos = Chaos(args, services, standin, token)
    try:
        await receiver.start(receiver_port)
        processes.start(
            "standin",
            [
                PYTHON,
                SELF,
                "_standin",
                f"--port={standin_port}",
                f"--seed={args.seed + 1}",
                f"--api-secret={api_secret}",
                f"--webhook-secret={webhook_secret}",
                f"--targets={','.join(services)}",
            ],
            env,
        )
        service_logs = [
            processes.start(f"service-{n}", [PYTHON, "-m", "app", "serve", f"--port={port}"], env)
            for n, port in enumerate(ports, 1)
        ]
        await _wait_http(f"{standin}/_control/state", processes)
        for url in services:
            await _wait_http(f"{url}/readyz", processes)
        print(f"stress: driving {args.orders} orders for {args.seconds:.0f} s …", flush=True)
        await chaos.drive(env)
        processes.check_alive()

        print("stress: faults off; draining webhooks, final reconciler pass …", flush=True)
        await chaos.control("faults", {"on": False})
        receiver.faults_on = False
        print(f"stress: webhooks left after draining: {await chaos.drain()}", flush=True)
        summary = None
        for _ in range(20):
            summary = await chaos.reconcile_cli(env)
            if summary is not None and not summary.get("skipped"):
                break
            await asyncio.sleep(0.5)
        print(f"stress: final reconciler pass {summary}", flush=True)
        await chaos.drain()
        await _outbox_settled(dsn, 45)
        processes.check_alive()
        state = (await chaos.http.get(f"{standin}/_control/state")).json()
        report = await check(dsn, state, receiver, chaos, service_logs)
        if summary is None or summary.get("skipped"):
            report.problems.append("the final reconciler pass did not run")
        _print_report(report, args, time.monotonic() - began)
        return 0 if report.ok else 1
    finally:
        await chaos.close()
        processes.stop_all()
        await receiver.stop()
        print(f"stress: processes stopped; logs in {logs}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=250)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the chaos")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = secrets.randbelow(10**6)
    from tests.database import fresh_database, postgres_server

    with postgres_server() as server, fresh_database(server) as database_url:
        return _run_interruptible(run(args, database_url))


def _run_interruptible(work: Awaitable[int]) -> int:
    """asyncio.run, with Ctrl-C and SIGTERM cancelling the run (so every cleanup runs)."""

    async def guarded() -> int:
        task = asyncio.ensure_future(work)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        return await task

    try:
        return asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("stress: interrupted", file=sys.stderr)
        return 130


def _standin_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stress.py _standin")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--api-secret", required=True)
    parser.add_argument("--webhook-secret", required=True)
    parser.add_argument("--targets", required=True)
    asyncio.run(run_standin(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["_standin"]:
        sys.exit(_standin_main(sys.argv[2:]))
    sys.exit(main())
