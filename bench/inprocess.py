"""CPU per first-time completion, in-process: where the service spends more than its yardstick.

    python3 bench/inprocess.py [--requests 3000] [--rounds 3] [--profile [N]]
                               [--gc-threshold 50000,10,10] [--only service] [--framework]
                               [--latency 50]

Both ASGI apps, the service (`app.main.create_app`, live mode, as `python -m app serve`
builds it) and the minimal verifier (bench/minimal_verifier.py), are called in this
process, without an HTTP server or a load generator, for first-time completions of fresh
PENDING orders, C at a time, against a fresh database `verifier_inprocess` and the bench's
PortOne stand-in (its own process). What is left is what the two apps themselves cost:
the figure is the process's CPU time per completion, the minimum over the rounds (the
least disturbed by neighbours), each app's rounds interleaved with the other's.

Each run prints its completions a second and median latency (with --latency MS, PortOne's
answers come that late) and the garbage collector's pauses: both apps share this process's
collector, set as the service sets it (`app.main.GC_THRESHOLD`) unless --gc-threshold.

--only service (or yardstick): that app's rounds alone, e.g. for
`py-spy record -r 250 -f raw -o spy.raw -- python3 bench/inprocess.py --only service --rounds 8`.

--framework: what a request costs without its work (the completion answers a fixed order
at once), beside FastAPI with one route and raw ASGI.

--profile: one more run of each under cProfile, on a CPU clock, and the functions and
packages where the service spends more than the yardstick (bench/inprocess-profile.txt).
Profiled figures are about three times real ones, but both apps are profiled alike, so
their differences point where the time goes. bench/README.md has what it found.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import gc
import json
import os
import pstats
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import _venv

_venv.enter()
sys.path.insert(0, str(_venv.ROOT))

# After the virtualenv: these import the project and its dependencies.
from app.orders.order import Order  # noqa: E402
from app.orders.schemas import PaymentResult  # noqa: E402
from app.payments.router import CompleteRequest  # noqa: E402
from bench.harness.database import Database  # noqa: E402
from bench.harness.servers import StandIn, migrate, verifier_settings  # noqa: E402
from bench.harness.settings import BENCH, CONCURRENCY, STORE_ID  # noqa: E402
from fastapi import FastAPI, Request, Response  # noqa: E402
from tests.database import admin, postgres_server, with_database  # noqa: E402
from tests.processes import Processes, free_port, wait_listening  # noqa: E402

DATABASE = "verifier_inprocess"
PROFILE = BENCH / "inprocess-profile.txt"
ASGIApp = Callable[..., Awaitable[None]]


@contextlib.contextmanager
def environment(database_url: str, standin_port: int) -> Iterator[None]:
    """What both apps read from the environment, as the bench's servers have it."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    values = verifier_settings(database_url, standin_port, secret)
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.asynccontextmanager
async def running(app: ASGIApp) -> Any:
    """`app` between its lifespan's startup and shutdown, as uvicorn runs it."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    assert started["type"] == "lifespan.startup.complete", started
    try:
        yield app
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


async def complete(app: ASGIApp, payment_id: str) -> int:
    """One `POST /payments/complete` through the app, as uvicorn would call it."""
    body = json.dumps({"paymentId": payment_id}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/payments/complete",
        "raw_path": b"/payments/complete",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


@dataclass
class Figures:
    """One run: CPU seconds per completion, completions a second and the median latency
    (s), and the garbage collector's pauses (ms)."""

    cpu: float
    rate: float
    p50: float
    pauses: list[float]
    freed: int

    def __str__(self) -> str:
        longest = max(self.pauses, default=0.0)
        return (
            f"{self.cpu * 1e6:7.0f} µs CPU/completion, {self.rate:5.0f}/s, p50"
            f" {self.p50 * 1000:5.1f} ms; {len(self.pauses)} collections, longest"
            f" {longest:5.1f} ms, {self.freed / max(len(self.pauses), 1):6.0f} freed each"
        )


async def completions(app: ASGIApp, payment_ids: list[str]) -> Figures:
    """Every id completed, C at a time (each must answer 200), and what that took."""
    queue = iter(payment_ids)
    statuses: Counter[int] = Counter()
    pauses: list[float] = []
    freed = 0
    began = 0.0

    def collection(phase: str, info: dict[str, int]) -> None:
        nonlocal began, freed
        if phase == "start":
            began = time.perf_counter()
        else:
            pauses.append((time.perf_counter() - began) * 1000)
            freed += info["collected"]

    latencies: list[float] = []

    async def worker() -> None:
        for payment_id in queue:
            sent = time.perf_counter()
            statuses[await complete(app, payment_id)] += 1
            latencies.append(time.perf_counter() - sent)

    gc.callbacks.append(collection)
    started, began_at = time.process_time(), time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    finally:
        spent, took = time.process_time() - started, time.perf_counter() - began_at
        gc.callbacks.remove(collection)
    assert statuses == {200: len(payment_ids)}, statuses
    count = len(payment_ids)
    return Figures(spent / count, count / took, statistics.median(latencies), pauses, freed)


def apps(gc_threshold: tuple[int, ...] | None) -> dict[str, ASGIApp]:
    """Both apps; the process's collector as the service sets it (or `gc_threshold`)."""
    from app import logs
    from app.config import load_settings
    from app.main import create_app, frozen
    from bench import minimal_verifier

    settings = load_settings()
    logs.configure(settings.log_level)
    built = {"service": frozen(create_app(settings)), "yardstick": minimal_verifier.make_app()}
    if gc_threshold:
        gc.set_threshold(*gc_threshold)
    print(f"gc threshold {gc.get_threshold()}", flush=True)
    return built


async def measure(db: Database, args: argparse.Namespace) -> None:
    built = apps(args.gc_threshold)
    measured = [args.only] if args.only else list(built)
    rounds = args.rounds
    async with running(built["service"]), running(built["yardstick"]):
        for app in built.values():  # warm-up: connections opened, code paths taken
            await completions(app, await _orders(db, 200))
        if args.framework:
            await framework(built["service"], args.requests, rounds)
            return
        best: dict[str, float] = {}
        for round_no in range(1, rounds + 1):
            for name in measured if round_no % 2 else reversed(measured):
                figures = await completions(built[name], await _orders(db, args.requests))
                best[name] = min(best.get(name, figures.cpu), figures.cpu)
                print(f"  round {round_no} {name:9} {figures}", flush=True)
        if args.only:
            return
        service, yardstick = best["service"], best["yardstick"]
        print(
            f"best of {rounds}: service {service * 1e6:.0f} µs, yardstick {yardstick * 1e6:.0f} µs,"
            f" difference {(service - yardstick) * 1e6:.0f} µs, ratio {service / yardstick:.2f}x",
            flush=True,
        )
        if args.profile:
            profiles = {}
            for name, app in built.items():
                payment_ids = await _orders(db, args.profile)
                profiler = cProfile.Profile(time.process_time)
                profiler.enable()
                await completions(app, payment_ids)
                profiler.disable()
                profiler.dump_stats(BENCH / f"inprocess-{name}.prof")  # for pstats, snakeviz
                profiles[name] = (pstats.Stats(profiler), args.profile)
            write_profile(profiles)


async def framework(service: Any, requests: int, rounds: int) -> None:
    """The request's cost without its work: the service's app with its completion answering
    one fixed order at once, FastAPI with one route taking the same body (or only the
    request), and raw ASGI reading and writing the same JSON."""
    from app.orders.order import Order
    from app.payments.router import CompleteRequest

    row = {f.name: None for f in fields(Order)}
    now = datetime.now(UTC)
    row |= {"id": "ord_1", "payment_id": "pay_1", "order_name": "Waffle trainer 2"}
    row |= {"amount": 10_000, "currency": "KRW", "status": "PAID", "paid_at": now}
    row |= {"refunded_amount": 0, "metadata": {}, "disputes": [], "compensation_attempts": 0}
    row |= {"created_at": now, "updated_at": now, "version": 1, "refunds": []}
    order = Order(**row)

    async def fixed(payment_id: str, **_: Any) -> Order:
        return order

    service.state.services.completion.complete = fixed
    with_body, request_only = FastAPI(), FastAPI()

    @with_body.post("/payments/complete")
    async def complete(body: CompleteRequest, request: Request) -> Response:
        return PaymentResult.of(order).answer()

    @request_only.post("/payments/complete")
    async def complete_request(request: Request) -> Response:
        CompleteRequest.model_validate_json(await request.body())
        return PaymentResult.of(order).answer()

    async def raw(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = json.loads((await receive())["body"])
        answer = json.dumps({"orderId": order.id, "paymentId": body["paymentId"]}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": answer})

    apps = {
        "the service's app": service,
        "FastAPI, one route with the body": with_body,
        "FastAPI, one route with the request": request_only,
        "raw ASGI": raw,
    }
    ids = [f"pay_{i}" for i in range(requests)]
    for name, app in apps.items():
        best = min([(await completions(app, ids)).cpu for _ in range(rounds)])
        print(f"  {name:38} {best * 1e6:6.1f} µs CPU a request (best of {rounds})", flush=True)


async def _orders(db: Database, count: int) -> list[str]:
    return (await asyncio.to_thread(db.create_pending, count))[1]


def _package(filename: str) -> str:
    for marker in ("site-packages/", f"{_venv.ROOT}/"):
        if marker in filename:
            return filename.split(marker, 1)[1].split("/", 1)[0].removesuffix(".py")
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins"
    return "stdlib:" + Path(filename).stem


def write_profile(profiles: dict[str, tuple[pstats.Stats, int]]) -> None:
    """Own time per completion by package and by function, and the service's excess."""
    per_package: dict[str, Counter[str]] = {}
    per_function: dict[str, Counter[str]] = {}
    totals: dict[str, float] = {}
    for name, (stats, count) in profiles.items():
        packages: Counter[str] = Counter()
        functions: Counter[str] = Counter()
        for (filename, line, function), row in stats.stats.items():  # type: ignore[attr-defined]
            own = row[2] / count * 1e6  # tottime, µs per completion
            packages[_package(filename)] += own
            where = filename.split("site-packages/")[-1].replace(f"{_venv.ROOT}/", "")
            functions[f"{function} ({where}:{line})"] += own
        per_package[name], per_function[name] = packages, functions
        totals[name] = sum(packages.values())
    service, yardstick = per_package["service"], per_package["yardstick"]
    lines = [
        f"cProfile (CPU clock), own time in profiled µs per first-time completion:"
        f" service {totals['service']:.0f}, yardstick {totals['yardstick']:.0f}",
        "",
        "by package, the service's excess over the yardstick:",
    ]
    excess = Counter({key: service[key] - yardstick.get(key, 0.0) for key in service})
    lines += [f"  {value:+7.0f}  {key}" for key, value in excess.most_common(14)]
    functions, theirs = per_function["service"], per_function["yardstick"]
    excess = Counter({key: functions[key] - theirs.get(key, 0.0) for key in functions})
    lines += ["", "by function, the service's excess over the yardstick (top 40):"]
    lines += [f"  {value:+7.1f}  {key}" for key, value in excess.most_common(40)]
    PROFILE.write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="completions per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--profile", type=int, nargs="?", const=3000, default=0, help="completions profiled"
    )
    parser.add_argument(
        "--gc-threshold",
        type=lambda value: tuple(int(n) for n in value.split(",")),
        help="the collector's thresholds instead of the service's (e.g. 50000,10,10)",
    )
    parser.add_argument(
        "--latency", type=int, default=0, help="the stand-in's PortOne latency, ms (default 0)"
    )
    parser.add_argument(
        "--framework",
        action="store_true",
        help="the request's cost alone: the completion answers a fixed order, no I/O",
    )
    parser.add_argument(
        "--only",
        choices=("service", "yardstick"),
        help="run only this app's rounds (for an outside profiler such as py-spy)",
    )
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        server_url = stack.enter_context(postgres_server())
        database_url = with_database(server_url, DATABASE)
        drop = f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'
        asyncio.run(admin(server_url, drop, f'CREATE DATABASE "{DATABASE}"'))
        stack.callback(lambda: asyncio.run(admin(server_url, drop)))
        migrate(database_url)
        procs = Processes(Path(stack.enter_context(tempfile.TemporaryDirectory())))
        stack.callback(procs.stop_all)
        port = free_port()
        standin = [sys.executable, str(BENCH / "portone_standin.py"), f"--port={port}"]
        procs.start("standin", [*standin, f"--store-id={STORE_ID}"])
        wait_listening(procs, "standin", port)
        stack.enter_context(environment(database_url, port))
        StandIn(port).set_latency(args.latency)
        import uvloop  # the servers' loop

        db = Database(database_url)
        uvloop.run(measure(db, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
