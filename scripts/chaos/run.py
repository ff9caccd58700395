"""The stress run: its processes, the chaos, the final pass, the checks and the report."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from scripts.chaos import service
from scripts.chaos.callers import Chaos
from scripts.chaos.checks import Report, check
from scripts.chaos.receiver import EventReceiver
from scripts.chaos.standin import STORE_ID
from tests.database import fresh_database, postgres_server
from tests.processes import Processes, free_port, wait_http

OUTBOX_SETTLED_WITHIN = 45.0
# A reconciler list takes a thirtieth of the run's orders a pass: the payments whose
# refunds PortOne holds (about a twelfth of the orders) outlast two passes.
ORDERS_A_PASS_TAKES = 30
# The longest of the reconciler's lists after the chaos, in payments.
LONGEST_LIST = """
SELECT greatest(
    (SELECT count(DISTINCT o.payment_id) FROM refunds r JOIN orders o ON o.id = r.order_id
     WHERE r.status IN ('IN_PROGRESS', 'RETRYABLE', 'REQUESTED')),
    (SELECT count(DISTINCT payment_id) FROM webhook_deliveries
     WHERE status IN ('FAILED', 'PROCESSING')),
    (SELECT count(*) FROM orders WHERE compensation_status IN ('OWED', 'REQUESTED')),
    (SELECT count(*) FROM orders
     WHERE status IN ('PENDING', 'AWAITING_DEPOSIT') AND expires_at <= now())
)
"""


def _whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


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


async def _backoffs_over(dsn: str) -> None:
    """The final pass retries every owed compensation, however recently the last failed."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "UPDATE orders SET compensation_next_attempt_at = NULL"
            " WHERE compensation_status = 'OWED'"
        )
    finally:
        await connection.close()


async def _leases_over(dsn: str) -> None:
    """The final passes come after every webhook delivery's lease ran out: a handler the
    database cut off left its delivery claimed, and PortOne, answered "duplicate" when it
    tried again, sends it no more."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "UPDATE webhook_deliveries SET lease_until = now() - interval '1 second'"
            " WHERE status = 'PROCESSING'"
        )
    finally:
        await connection.close()


async def _final_passes(
    chaos: Chaos, env: dict[str, str], dsn: str
) -> tuple[list[dict[str, Any]], int]:
    """As many reconciler passes as the longest list needs, with one to spare, each run to
    the end (a pass skipped for another replica's does not count): their summaries, and
    how many were wanted."""
    connection = await asyncpg.connect(dsn)
    try:
        longest: int = await connection.fetchval(LONGEST_LIST)
    finally:
        await connection.close()
    summaries = []
    wanted = -(-longest // chaos.per_pass) + 1
    for _ in range(wanted):
        for _ in range(20):
            summary = await chaos.reconcile_cli(env)
            if summary is not None and not summary.get("skipped"):
                summaries.append(summary)
                break
            await asyncio.sleep(0.5)
    print(
        f"stress: {len(summaries)} final reconciler passes, {chaos.per_pass} payments a list"
        f" a pass, for a longest list of {longest}: {summaries}",
        flush=True,
    )
    return summaries, wanted


def print_report(report: Report, args: argparse.Namespace, seconds: float) -> None:
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
    began = time.monotonic()
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    logs = Path(tempfile.mkdtemp(prefix="stress-logs-"))
    processes = Processes(logs)
    token, api_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(16)
    webhook_secret, events_secret = _whsec(), _whsec()
    standin_port, receiver_port = free_port(), free_port()
    ports = [free_port(), free_port()]
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
        # A pool of the run's size: the Postgres it shares has room for a hundred clients.
        "DATABASE_POOL_SIZE": "10",
    }
    per_pass = max(2, args.orders // ORDERS_A_PASS_TAKES)
    reconciler_log = processes.log("reconcile")
    chaos = Chaos(
        args, services, standin, token, dsn=dsn, per_pass=per_pass, reconciler_log=reconciler_log
    )
    try:
        await receiver.start(receiver_port)
        processes.start(
            "standin",
            [
                sys.executable,
                "-m",
                "scripts.chaos.standin",
                f"--port={standin_port}",
                f"--seed={args.seed + 1}",
                f"--api-secret={api_secret}",
                f"--webhook-secret={webhook_secret}",
                f"--targets={','.join(services)}",
            ],
            env=env,
        )
        service_logs = []
        for n, port in enumerate(ports, 1):
            argv = [*service.command(per_pass), "serve", f"--port={port}"]
            processes.start(f"service-{n}", argv, env=env)
            service_logs.append(processes.log(f"service-{n}"))
        await wait_http(processes, "standin", f"{standin}/_control/state")
        for n, url in enumerate(services, 1):
            await wait_http(processes, f"service-{n}", f"{url}/readyz")
        print(f"stress: driving {args.orders} orders for {args.seconds:.0f} s …", flush=True)
        await chaos.drive(env)
        processes.check_alive()

        print("stress: faults off; draining webhooks, final reconciler passes …", flush=True)
        await chaos.control("faults", {"on": False})
        await chaos.control("settle", {"share": 1.0})  # PortOne settles what it held
        receiver.faults_on = False
        await _backoffs_over(dsn)
        print(f"stress: webhooks left after draining: {await chaos.drain()}", flush=True)
        await _leases_over(dsn)
        passes, wanted = await _final_passes(chaos, env, dsn)
        await chaos.drain()
        await _outbox_settled(dsn, OUTBOX_SETTLED_WITHIN)
        processes.check_alive()
        state = (await chaos.http.get(f"{standin}/_control/state")).json()
        report = await check(dsn, state, receiver, chaos, service_logs, passes)
        if len(passes) < wanted:
            report.problems.append(f"{len(passes)} of {wanted} final reconciler passes ran")
        print_report(report, args, time.monotonic() - began)
        return 0 if report.ok else 1
    finally:
        await chaos.close()
        processes.stop_all(grace=15.0)
        await receiver.stop()
        print(f"stress: processes stopped; logs in {logs}", flush=True)


def main(argv: list[str] | None = None, *, description: str | None = None) -> int:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--orders", type=int, default=250)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the chaos")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = secrets.randbelow(10**6)
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
