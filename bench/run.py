"""The benchmark: the service as deployed against a minimal correct verifier, its yardstick.

    python3 bench/run.py [--quick] [--profile [WORKLOAD]] [--keep-db]

Creates .venv if needed (like scripts/run.py), then, on loopback only: a fresh database
`verifier_bench` on the Postgres at 127.0.0.1:5432 (else an embedded one), migrated by
`alembic upgrade head`; a PortOne stand-in (bench/portone_standin.py); the service
(`python -m app serve`, live mode, uvicorn without reload or access log), the minimal
verifier (bench/minimal_verifier.py, on the service's PortOne client: httpx over
httpx-aiohttp's transport), a verifier shaped as PortOne's Flask sample
(bench/flask_sample.py, first-time completions only) and a constant-JSON FastAPI app
(bench/constant.py), all pinned to core 0; wrk (or, without it, an aiohttp driver)
pinned to core 1, C=32.

The figure the targets are set on, first-time completions at PortOne latency 0, is
measured on the service and the minimal verifier in each of --rounds interleaved rounds
(default 5 of 8 s; who goes first alternates), and reported as the median of the rounds
with their range; the ratios are taken within each round. Signed webhooks at latency 0
are measured in every round too (runs of --figure-seconds). The first --figure-rounds
rounds (default 1, runs of 5 s) also measure the rest (bench/harness/workloads.py):
first-time completions at 50 ms, repeated completions, signed webhooks and the hot
payment (C clients, one unpaid payment) at 0 and 50 ms, the Flask sample, the constant
ceiling. Prints a table, the ratios and the targets, writes bench/results.json; then
checks that every paid order went PENDING -> PAID exactly once. Every process it starts
is stopped on the way out. The default run takes about 4 minutes; --quick, three
rounds of 3 s, about 1 1/2.
--profile [first|repeat|webhook|hot]: one more round of that workload (default
first-time) with py-spy on the service (bench/profile.txt, and the collapsed stacks in
bench/profile.raw); `--rounds 0 --profile` profiles only. `--workloads first,webhook`
and `--latencies 0` narrow the other figures (for iterating).
BENCH_CONCURRENCY overrides C; BENCH_LOG_LEVEL the servers' LOG_LEVEL (WARNING);
BENCH_PYSPY_ARGS adds py-spy options. One run at a time. bench/README.md has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import _venv

_venv.enter()
sys.path.insert(0, str(_venv.ROOT))

# After the virtualenv: these import the project and its dependencies.
from bench.harness import report  # noqa: E402
from bench.harness.database import Database  # noqa: E402
from bench.harness.load import Load  # noqa: E402
from bench.harness.profiling import profile, write_profile  # noqa: E402
from bench.harness.servers import (  # noqa: E402
    ensure_bench_packages,
    ensure_wrk,
    migrate,
    start_servers,
)
from bench.harness.settings import (  # noqa: E402
    CONCURRENCY,
    DATABASE,
    LATENCIES,
    LOAD_CPU,
    RESULTS,
    ROOT,
    SERVER_CPU,
)
from bench.harness.workloads import MEASURED, Bench  # noqa: E402
from tests.database import admin, postgres_server, with_database  # noqa: E402
from tests.processes import Processes, ProcessFailed  # noqa: E402


def bench(
    args: argparse.Namespace,
    stack: contextlib.ExitStack,
    scratch: Path,
    seconds: float,
    rounds: int,
) -> int:
    server_url = stack.enter_context(postgres_server())
    database_url = with_database(server_url, DATABASE)
    drop = f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'
    asyncio.run(admin(server_url, drop, f'CREATE DATABASE "{DATABASE}"'))
    if not args.keep_db:
        stack.callback(lambda: asyncio.run(admin(server_url, drop)))
    migrate(database_url)
    procs = Processes(scratch)
    stack.callback(procs.stop_all)  # registered after the database: runs before its drop

    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    servers, standin = start_servers(procs, database_url, secret, args.workers)
    measured = report.machine()  # the commit and the state of app/ the service started from
    load = Load(procs, scratch)
    db = Database(database_url)
    run = Bench(procs, load, db, servers, standin, secret, seconds)
    workers = args.workers
    print(
        f"{rounds} round(s) of {seconds:g} s runs, C={CONCURRENCY}, load by {load.tool} on core "
        f"{LOAD_CPU}, servers on core {SERVER_CPU}, database {DATABASE}"
        + (f"; the service: {workers} workers on cores 0-{workers - 1}" if workers > 1 else ""),
        flush=True,
    )
    run.set_latency(0)
    for name in ("service", "minimal", "sample"):
        run.measure(name, "first", round_no=0, seconds=1, record=False)  # warm-up
    run.measure("constant", "constant", round_no=0, seconds=1, record=False)
    figures = [
        (workload, latency)
        for latency in args.latencies
        for workload in args.workloads
        if not (workload == "repeat" and latency)  # no PortOne call: latency is moot
    ]
    for round_no in range(1, rounds + 1):
        print(f"round {round_no}", flush=True)
        others = figures if round_no <= args.figure_rounds else []
        run.round(round_no, others, args.figure_seconds)
    profile_summary = profile(run, args.profile, min(seconds, 8) + 1) if args.profile else None

    rows = report.summarise(run.runs)
    found = report.ratios(rows, run.runs, run.rss_after_round) if rows else {}
    checks = report.goal_checks(rows, found) if rows else []
    if rows:
        report.print_table(rows, found)
        report.print_first(rows, found)
        report.print_figures(found, checks)
    check = db.check(run.batches)
    print_check(check)
    results = {
        "command": "python3 bench/run.py" + (" --quick" if args.quick else ""),
        "machine": measured,
        "config": {
            "seconds": seconds,
            "rounds": rounds,
            "figure_rounds": min(args.figure_rounds, rounds),
            "figure_seconds": args.figure_seconds,
            "concurrency": CONCURRENCY,
            "load_generator": load.tool,
            "server_core": SERVER_CPU,
            "service_workers": args.workers,
            "load_core": LOAD_CPU,
            "portone_latencies_ms": args.latencies,
            "yardstick": "minimal: bench/minimal_verifier.py (httpx over AiohttpTransport)",
        },
        "summary": rows,
        "ratios": found,
        "targets": [{"target": w, "met": m, "measured": v} for w, m, v in checks],
        "rss_after_round_mib": [
            {k: v / 2**20 for k, v in entry.items()} for entry in run.rss_after_round
        ],
        "runs": run.runs,
        "check": check,
        "profile": profile_summary,
    }
    if rows:  # a profile-only run (--rounds 0) leaves the last figures alone
        RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"written: {RESULTS.relative_to(ROOT)}", flush=True)
    if profile_summary is not None:
        write_profile(profile_summary)
    return 0 if check["ok"] else 1


def print_check(check: dict[str, Any]) -> None:
    totals, inconsistent = check["totals"], check["inconsistent_batches"]
    print(
        f"\nPAID exactly once: {'OK' if check['ok'] else 'FAILED'} — {totals['paid']} paid orders, "
        f"{totals['paid_once']} with one PENDING->PAID event, "
        f"{totals['paid_more_than_once']} with more, "
        f"{totals['paid_without_transition']} paid without one, "
        f"{totals['transition_but_not_paid']} with one but not paid, "
        f"{totals['other_status']} in another status; every 200 of a first-time run left a "
        f"PAID order: {inconsistent or 'yes'}"
        f"; webhook deliveries not PROCESSED: {totals['deliveries_not_processed']}",
        flush=True,
    )


@contextlib.contextmanager
def one_at_a_time() -> Iterator[None]:
    """Two runs would drop each other's database and share the cores: refuse the second."""
    import fcntl

    with (Path(tempfile.gettempdir()) / "verifier-bench.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit("another bench/run.py is running on this machine") from None
        yield


def _workloads(value: str) -> list[str]:
    chosen = value.split(",")
    unknown = set(chosen) - set(MEASURED)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown workload(s): {', '.join(sorted(unknown))}")
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three rounds of 3 s runs")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="first",
        choices=MEASURED,
        help="py-spy the service during one more round of this workload (default first)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="service worker processes (default 1)"
    )
    parser.add_argument(
        "--workloads",
        type=_workloads,
        default=list(MEASURED),
        help=f"comma-separated subset of {','.join(MEASURED)} (default all; for iterating)",
    )
    parser.add_argument(
        "--latencies",
        type=lambda value: [int(ms) for ms in value.split(",")],
        default=list(LATENCIES),
        help="comma-separated PortOne latencies in ms (default 0,50)",
    )
    parser.add_argument("--keep-db", action="store_true", help=f"keep the {DATABASE} database")
    parser.add_argument(
        "--seconds", type=float, help="seconds per first-time run (default 8, quick 3)"
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5, quick 3)")
    parser.add_argument(
        "--figure-rounds",
        type=int,
        default=1,
        help="rounds that also run the other workloads and latencies (default 1)",
    )
    parser.add_argument(
        "--figure-seconds", type=float, help="seconds per run of those (default 5, quick 3)"
    )
    args = parser.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 8.0)
    args.figure_seconds = args.figure_seconds or (3.0 if args.quick else 5.0)
    rounds = args.rounds if args.rounds is not None else (3 if args.quick else 5)
    ensure_bench_packages()
    ensure_wrk()

    def interrupted(signum: int, _: object) -> None:
        raise KeyboardInterrupt

    # Our own handler for both: asyncio.run() then leaves SIGINT alone instead of turning it
    # into a cancellation that a connect in progress may swallow.
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    started = time.monotonic()
    try:
        with (
            one_at_a_time(),
            tempfile.TemporaryDirectory(prefix="verifier-bench-") as scratch,
            contextlib.ExitStack() as stack,
        ):
            return bench(args, stack, Path(scratch), seconds, rounds)
    except KeyboardInterrupt:
        print("\ninterrupted: everything it started is stopped", flush=True)
        return 130
    except ProcessFailed as failure:
        print(f"\n{failure}", file=sys.stderr, flush=True)
        return 1
    finally:
        print(f"({time.monotonic() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
