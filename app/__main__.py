"""`python -m app serve|reconcile|deliver-events`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import Any

from app import logs
from app.config import ConfigurationError, Settings, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=_count,
        help="worker processes, one per core at most (default: WEB_CONCURRENCY, else 1)",
    )
    commands.add_parser("reconcile", help="run one reconciler pass and print its summary")
    commands.add_parser("deliver-events", help="deliver the order events that are due, once")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.command in ("reconcile", "deliver-events"):
        once = reconcile if args.command == "reconcile" else deliver_events
        return asyncio.run(_or_outage(once(settings)))
    try:
        workers = args.workers or _count(os.environ.get("WEB_CONCURRENCY", "1"))
    except argparse.ArgumentTypeError as exc:
        print(f"WEB_CONCURRENCY: {exc}", file=sys.stderr)
        return 2
    if workers > 1 and settings.portone_mode == "sandbox":
        # Its emulated PortOne lives in memory. A platform's WEB_CONCURRENCY is ignored.
        if args.workers:
            print("sandbox mode runs one worker: --workers must be 1", file=sys.stderr)
            return 2
        workers = 1
    serve_http(settings, args.host, args.port, workers)
    return 0


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, not {text!r}")
    return int(text)


async def _or_outage(command: Coroutine[Any, Any, int]) -> int:
    """A one-shot command's exit code; an outage of the database is one line and exit 1
    (the next run finishes the job), not a traceback."""
    from app.db import database_unavailable

    try:
        return await command
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        print(f"the database did not answer ({type(exc).__name__}); try again", file=sys.stderr)
        return 1


async def reconcile(settings: Settings) -> int:
    from app.wiring import open_services

    logs.configure(settings.log_level)
    async with open_services(settings) as services:
        summary = await services.reconciler().run_pass()
    print(json.dumps(asdict(summary)))
    return 0 if summary.ok else 1


async def deliver_events(settings: Settings) -> int:
    from app.outbox.delivery import new_events_client
    from app.wiring import open_services

    logs.configure(settings.log_level)
    async with open_services(settings) as services, new_events_client() as http:
        delivery = services.event_delivery(http)
        if delivery is None:
            print("ORDER_EVENTS_URL is not set: no order events to deliver", file=sys.stderr)
            return 2
        summary = await delivery.deliver_due()
    print(json.dumps(asdict(summary)))
    return 0 if summary.failed == 0 else 1


def serve_http(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    import uvicorn

    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "access_log": False,  # RequestContext logs each request, with its ids
        "proxy_headers": True,
        "forwarded_allow_ips": os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        "log_config": None,
        "timeout_graceful_shutdown": 20,
    }
    logs.configure(settings.log_level)
    if workers == 1:
        from app.main import create_app, frozen

        uvicorn.run(frozen(create_app(settings)), **options)
        return
    # Each worker process builds its own app from the environment; their metrics meet in
    # files (prometheus_client's multiprocess mode), so /metrics counts every worker.
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    metrics_dir = Path(given or tempfile.mkdtemp(prefix="verifier-metrics-"))
    for stale in metrics_dir.glob("*.db"):  # an earlier run's counts are not this one's
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    try:
        uvicorn.run("app.main:worker_app", factory=True, workers=workers, **options)
    finally:
        if given is None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
