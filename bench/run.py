"""The benchmark of issue 8: the service as deployed against a minimal correct verifier.

    python3 bench/run.py [--quick] [--profile [WORKLOAD]] [--keep-db]

Creates .venv if needed (like scripts/run.py), then, on loopback only: a fresh database
`verifier_bench` on the Postgres at 127.0.0.1:5432 (else an embedded one), migrated by
`alembic upgrade head`; a PortOne stand-in (bench/portone_standin.py); the service
(`python -m app serve`, live mode, uvicorn without reload or access log), the minimal
verifier (bench/minimal_verifier.py), a verifier shaped as PortOne's Flask sample
(bench/flask_sample.py, first-time completions only) and a constant-JSON FastAPI app
(bench/constant.py), all pinned to core 0; wrk (or, without it, an aiohttp driver)
pinned to core 1, C=32.

Workloads, in interleaved rounds: first-time completions (each request a different
pending order), repeated completions of PAID orders, signed webhooks (each a new
webhook-id for a pending order), at PortOne latency 0 and 50 ms; the constant ceiling.
Prints a table and writes bench/results.json; then checks that every paid order went
PENDING -> PAID exactly once. Every process it starts is stopped on the way out.
--quick: one round of 3 s runs (under a minute); default: two rounds of 10 s (~4 min).
--profile [first|repeat|webhook]: one more round of that workload (default first-time)
with py-spy on the service (bench/profile.txt, and the collapsed stacks in
bench/profile.raw); `--rounds 0 --profile` profiles only. `--workloads first,webhook`
and `--latencies 0` run a subset (for iterating; the targets of the others are left out).
BENCH_CONCURRENCY overrides C; BENCH_LOG_LEVEL the servers' LOG_LEVEL (WARNING);
BENCH_PYSPY_ARGS adds py-spy options. One run at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import _venv

_venv.enter()

ROOT = _venv.ROOT
sys.path.insert(0, str(ROOT))
from tests.database import admin, postgres_server, with_database  # noqa: E402 (after the venv)

BENCH = ROOT / "bench"
RESULTS = BENCH / "results.json"
PROFILE = BENCH / "profile.txt"
DATABASE = "verifier_bench"
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))  # the C=32
SERVER_CPU, LOAD_CPU = "0", "1"
STORE_ID = "store-bench-0001"
LATENCIES = (0, 50)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# Requests/s assumed before a workload has been measured; sizes the first batches of orders.
EXPECTED_RPS = {0: 3000.0, 50: 800.0}


# ---------------------------------------------------------------- processes


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: a child outlives no run.py, even one killed with SIGKILL.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


class Processes:
    """Everything this run started; stopped in reverse order, whatever happens."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        cpu: str | None = None,
        env: dict[str, str] | None = None,
        capture: bool = False,
    ) -> subprocess.Popen[bytes]:
        if cpu is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", cpu, *argv]  # taskset execs: the pid is the program's
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else log,
            stderr=log,
            start_new_session=True,  # Ctrl-C reaches run.py only; it stops the rest in order
            preexec_fn=_die_with_parent,
        )
        log.close()
        self.running.append((name, process))
        return process

    def finished(self, process: subprocess.Popen[bytes]) -> None:
        self.running = [(n, p) for n, p in self.running if p is not process]

    def stop_all(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
        for name, process in reversed(self.running):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    print(f"  {name} ignored SIGTERM; killing it", flush=True)
                    process.kill()
                    process.wait()
        self.running.clear()

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.logs / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_listening(
    procs: Processes, name: str, process: subprocess.Popen[bytes], port: int, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited ({process.returncode}):\n{procs.log_tail(name)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise SystemExit(f"{name} did not listen on {port} within {timeout:.0f} s")


def http(method: str, port: int, path: str) -> tuple[int, bytes]:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# ---------------------------------------------------------------- /proc


@dataclass
class Sample:
    cpu_ticks: int
    system_ticks: int
    threads: int
    rss: int
    hwm: int
    core_busy: int
    core_total: int
    at: float


def _family(pid: int) -> list[int]:
    """`pid` and its children: uvicorn's supervisor and its workers under --workers."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
                children.append(int(stat.parent.name))
    return [pid, *children]


def sample(pid: int) -> Sample:
    """CPU summed over the process and its workers; memory of the largest one."""
    cpu = system = threads = rss = hwm = 0
    for member in _family(pid):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{member}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            status = dict(
                line.split(":", 1)
                for line in Path(f"/proc/{member}/status").read_text().splitlines()
            )
            cpu += int(fields[11]) + int(fields[12])  # utime + stime, every thread
            system += int(fields[12])
            threads += int(fields[17])
            rss = max(rss, int(status["VmRSS"].split()[0]) * 1024)
            hwm = max(hwm, int(status["VmHWM"].split()[0]) * 1024)
    busy = total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{SERVER_CPU} "):
            ticks = [int(v) for v in line.split()[1:]]
            total = sum(ticks[:8])
            busy = total - ticks[3] - ticks[4]  # minus idle and iowait
    return Sample(
        cpu_ticks=cpu,
        system_ticks=system,
        threads=threads,
        rss=rss,
        hwm=hwm,
        core_busy=busy,
        core_total=total,
        at=time.monotonic(),
    )


# ---------------------------------------------------------------- database


class Database:
    """Direct access for the harness: batches of orders, paid orders, the final check."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.batches = 0

    async def _connect(self) -> Any:
        import asyncpg

        return await asyncpg.connect(self.url)

    def create_pending(self, count: int) -> tuple[str, list[str]]:
        """`count` new PENDING orders of 10000 KRW; their batch prefix and paymentIds."""
        self.batches += 1
        prefix = f"b{self.batches:03d}_"
        rows = [
            (f"ord_{prefix}{i:07d}", f"pay_{prefix}{i:07d}", "Waffle trainer 2", 10_000, "KRW")
            for i in range(count)
        ]

        async def insert() -> None:
            connection = await self._connect()
            try:
                await connection.copy_records_to_table(
                    "orders",
                    records=[(*row, "PENDING") for row in rows],
                    columns=["id", "payment_id", "order_name", "amount", "currency", "status"],
                )
                await connection.execute("ANALYZE orders")
            finally:
                await connection.close()

        asyncio.run(insert())
        return prefix, [row[1] for row in rows]

    def sessions(self) -> int:
        """Connections ever opened to this database (pool churn shows up here)."""

        async def select() -> int:
            connection = await self._connect()
            try:
                await connection.execute("SELECT pg_stat_clear_snapshot()")
                return int(
                    await connection.fetchval(
                        "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
                    )
                )
            finally:
                await connection.close()

        return asyncio.run(select())

    def paid_payment_ids(self, limit: int) -> list[str]:
        async def select() -> list[str]:
            connection = await self._connect()
            try:
                rows = await connection.fetch(
                    "SELECT payment_id FROM orders WHERE status = 'PAID' LIMIT $1", limit
                )
            finally:
                await connection.close()
            return [row["payment_id"] for row in rows]

        return asyncio.run(select())

    def check(self, batches: list[dict[str, Any]]) -> dict[str, Any]:
        """Every PAID order went PENDING -> PAID exactly once; every 200 left a PAID order."""

        async def query() -> dict[str, Any]:
            connection = await self._connect()
            try:
                totals = await connection.fetchrow(
                    """
                    WITH t AS (
                        SELECT order_id, count(*) AS n FROM order_history
                        WHERE from_status = 'PENDING' AND to_status = 'PAID' GROUP BY order_id
                    )
                    SELECT
                      (SELECT count(*) FROM orders) AS orders,
                      (SELECT count(*) FROM orders WHERE status = 'PAID') AS paid,
                      (SELECT count(*) FROM t WHERE n = 1) AS paid_once,
                      (SELECT count(*) FROM t WHERE n > 1) AS paid_more_than_once,
                      (SELECT count(*) FROM orders o WHERE o.status = 'PAID'
                         AND NOT EXISTS (SELECT 1 FROM t WHERE t.order_id = o.id))
                         AS paid_without_transition,
                      (SELECT count(*) FROM t JOIN orders o ON o.id = t.order_id
                         WHERE o.status <> 'PAID') AS transition_but_not_paid,
                      (SELECT count(*) FROM orders WHERE status NOT IN ('PENDING', 'PAID'))
                         AS other_status,
                      (SELECT count(*) FROM order_history) AS events,
                      (SELECT count(*) FROM webhook_deliveries) AS deliveries,
                      (SELECT count(*) FROM webhook_deliveries WHERE status <> 'PROCESSED')
                         AS deliveries_not_processed
                    """
                )
                per_batch = []
                for batch in batches:
                    paid = await connection.fetchval(
                        "SELECT count(*) FROM orders WHERE id LIKE $1 AND status = 'PAID'",
                        f"ord_{batch['prefix']}%",
                    )
                    per_batch.append({**batch, "paid": paid})
            finally:
                await connection.close()
            return {"totals": dict(totals), "batches": per_batch}

        result = asyncio.run(query())
        t = result["totals"]
        # A run that wrapped around its orders sent some twice: at most `orders` can be paid.
        short = [
            b
            for b in result["batches"]
            if not min(b["ok"], b["orders"]) <= b["paid"] <= min(b["sent"], b["orders"])
        ]
        result["ok"] = (
            t["paid"] == t["paid_once"]
            and t["paid_more_than_once"] == 0
            and t["paid_without_transition"] == 0
            and t["transition_but_not_paid"] == 0
            and t["other_status"] == 0
            and not short
        )
        result["inconsistent_batches"] = short
        return result


# ---------------------------------------------------------------- load


def webhook_lines(payment_ids: list[str], secret: str) -> list[str]:
    from app.standard_webhooks import decode_secret, sign

    key = decode_secret(secret)
    now = int(time.time())
    lines = []
    for payment_id in payment_ids:
        body = json.dumps(
            {
                "type": "Transaction.Paid",
                "timestamp": "2026-11-27T00:00:00Z",
                "data": {"storeId": STORE_ID, "paymentId": payment_id, "transactionId": "tx-1"},
            },
            separators=(",", ":"),
        ).encode()
        webhook_id = f"msg_{secrets.token_hex(10)}"
        lines.append(f"{webhook_id}\t{now}\t{sign(key, webhook_id, now, body)}\t{body.decode()}")
    return lines


class Load:
    """wrk with bench/load.lua when installed, else bench/loadgen.py; pinned to core 1."""

    def __init__(self, procs: Processes, scratch: Path) -> None:
        self.procs = procs
        self.scratch = scratch
        self.wrk = shutil.which("wrk")

    @property
    def tool(self) -> str:
        return "wrk" if self.wrk else "bench/loadgen.py (aiohttp)"

    def run(self, port: int, mode: str, lines: list[str], seconds: float) -> dict[str, Any]:
        file = self.scratch / "requests.txt"
        file.write_text("\n".join(lines) + "\n" if lines else "")
        url = f"http://127.0.0.1:{port}"
        if self.wrk:
            argv = [self.wrk, "-t1", f"-c{CONCURRENCY}", f"-d{seconds:g}s", "--timeout", "10s"]
            argv += ["--latency", "-s", str(BENCH / "load.lua"), url, "--", mode, str(file)]
        else:
            argv = [sys.executable, str(BENCH / "loadgen.py"), url, mode, str(file)]
            argv += ["--connections", str(CONCURRENCY), "--seconds", str(seconds)]
        process = self.procs.start("load", argv, cpu=LOAD_CPU, capture=True)
        out, _ = process.communicate(timeout=seconds + 60)  # on any error stop_all ends it
        self.procs.finished(process)
        for line in out.decode().splitlines():
            if line.startswith("BENCH "):
                result: dict[str, Any] = json.loads(line.removeprefix("BENCH "))
                return result
        raise SystemExit(f"the load generator reported nothing:\n{self.procs.log_tail('load')}")


# ---------------------------------------------------------------- the run


@dataclass
class Target:
    name: str
    port: int
    process: subprocess.Popen[bytes]


@dataclass
class Bench:
    procs: Processes
    load: Load
    db: Database
    targets: dict[str, Target]
    standin_port: int
    secret: str
    seconds: float
    runs: list[dict[str, Any]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    rss_after_round: list[dict[str, int]] = field(default_factory=list)
    latency: int = -1

    def set_latency(self, ms: int) -> None:
        if ms != self.latency:
            status, body = http("PUT", self.standin_port, f"/_bench/latency?ms={ms}")
            assert status == 200, body
            self.latency = ms

    def requests_for(self, workload: str, seconds: float) -> int:
        """Fresh orders enough for a run: twice the best rate any target has shown here (the
        machine's speed moves between rounds; a run that wraps around measures repeats)."""
        measured = [
            r["rps"]
            for r in self.runs
            if (r["workload"], r["latency_ms"]) == (workload, self.latency)
        ]
        rps = max(measured) if measured else EXPECTED_RPS[self.latency]
        return int(rps * seconds * 2) + 300

    def measure(
        self,
        target_name: str,
        workload: str,
        *,
        round_no: int,
        seconds: float | None = None,
        record: bool = True,
    ) -> dict[str, Any]:
        seconds = seconds or self.seconds
        target = self.targets[target_name]
        prefix = None
        if workload == "first" and target_name == "sample":
            # It keeps payments in a dict: fresh ids are first-time completions to it.
            tag = secrets.token_hex(4)
            mode = "complete"
            lines = [f"sample-{tag}-{i}" for i in range(self.requests_for(workload, seconds))]
        elif workload == "first":
            prefix, ids = self.db.create_pending(self.requests_for(workload, seconds))
            mode, lines = "complete", ids
        elif workload == "repeat":
            mode, lines = "complete", self.db.paid_payment_ids(20_000)
            assert lines, "no PAID orders to complete again"
        elif workload == "webhook":
            prefix, ids = self.db.create_pending(self.requests_for(workload, seconds))
            mode, lines = "webhook", webhook_lines(ids, self.secret)
        else:
            mode, lines = "constant", []
        sessions_before = self.db.sessions()
        before = sample(target.process.pid)
        result = self.load.run(target.port, mode, lines, seconds)
        after = sample(target.process.pid)
        # Minus the harness's own two connections (this count and the one before it).
        new_sessions = max(self.db.sessions() - sessions_before - 2, 0)
        requests = max(result["requests"], 1)
        errors = sum(result[k] for k in ("status_errors", "connect_errors", "read_errors"))
        errors += result["write_errors"] + result["timeouts"]
        run = {
            "round": round_no,
            "target": target_name,
            "workload": workload,
            "latency_ms": self.latency if workload != "constant" else 0,
            "seconds": result["duration_us"] / 1e6,
            "requests": result["requests"],
            "errors": errors,
            "rps": result["requests"] / (result["duration_us"] / 1e6),
            "p50_ms": result["p50_us"] / 1000,
            "p90_ms": result["p90_us"] / 1000,
            "p99_ms": result["p99_us"] / 1000,
            "max_ms": result["max_us"] / 1000,
            "cpu_ms_per_request": (after.cpu_ticks - before.cpu_ticks) * 1000 / CLK_TCK / requests,
            "system_cpu_share": (after.system_ticks - before.system_ticks)
            / max(after.cpu_ticks - before.cpu_ticks, 1),
            "threads": after.threads,
            "core0_busy": (after.core_busy - before.core_busy)
            / max(after.core_total - before.core_total, 1),
            "rss_mib": after.rss / 2**20,
            "peak_rss_mib": after.hwm / 2**20,
            "db_connections_opened": new_sessions,
            "wrapped": result["wrapped"],
        }
        if prefix is not None:
            # Which orders this run was meant to pay, for the check at the end.
            self.batches.append(
                {
                    "prefix": prefix,
                    "target": target_name,
                    "workload": workload,
                    "orders": len(lines),
                    "sent": result["sent"],
                    "ok": result["requests"] - result["status_errors"],
                }
            )
        if result["wrapped"] and workload in ("first", "webhook"):
            # Its later requests were repeats, which are cheaper: not a figure of this workload.
            print(f"  ! {target_name} {workload}: ran out of fresh orders; left out", flush=True)
            record = False
        if record:
            self.runs.append(run)
        print(
            f"  {'r' + str(round_no) if record else '--'} {target_name:8} {WORKLOADS[workload]:26} "
            f"{run['latency_ms']:>3} ms  {run['rps']:8.0f} req/s  "
            f"p50 {run['p50_ms']:6.1f}  p99 {run['p99_ms']:6.1f} ms  "
            f"{run['cpu_ms_per_request']:.2f} CPU ms/req ({run['system_cpu_share']:.0%} sys)  "
            f"{run['threads']} threads  "
            f"core0 {run['core0_busy']:.0%}  new DB conns {new_sessions}  errors {errors}",
            flush=True,
        )
        return run

    def round(self, round_no: int, workloads: list[str], latencies: list[int]) -> None:
        # Alternate who goes first, so neither always runs on a warmer (or fuller) database.
        order = ["service", "minimal"] if round_no % 2 else ["minimal", "service"]
        for latency in latencies:
            self.set_latency(latency)
            for workload in workloads:
                if workload == "repeat" and latency:
                    continue  # a repeated completion makes no PortOne call: latency is moot
                for name in order + (["sample"] if workload == "first" else []):
                    self.measure(name, workload, round_no=round_no)
        self.set_latency(0)
        self.measure("constant", "constant", round_no=round_no)
        self.rss_after_round.append(
            {name: sample(t.process.pid).rss for name, t in self.targets.items()}
        )


WORKLOADS = {
    "first": "first-time completions",
    "repeat": "repeated completions",
    "webhook": "signed webhooks",
    "constant": "constant JSON (ceiling)",
}


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (workload, latency, target), over all rounds."""
    keys: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for run in runs:
        keys.setdefault((run["workload"], run["latency_ms"], run["target"]), []).append(run)
    rows = []
    for (workload, latency, target), group in keys.items():
        requests = sum(r["requests"] for r in group)
        seconds = sum(r["seconds"] for r in group)
        rows.append(
            {
                "workload": workload,
                "latency_ms": latency,
                "target": target,
                "rounds": len(group),
                "requests": requests,
                "errors": sum(r["errors"] for r in group),
                "rps": requests / seconds,
                "p50_ms": statistics.median(r["p50_ms"] for r in group),
                "p99_ms": max(r["p99_ms"] for r in group),
                "cpu_ms_per_request": sum(r["cpu_ms_per_request"] * r["requests"] for r in group)
                / max(requests, 1),
                "peak_rss_mib": max(r["peak_rss_mib"] for r in group),
                "db_connections_per_1k": sum(r["db_connections_opened"] for r in group)
                * 1000
                / max(requests, 1),
            }
        )
    return rows


def ratios(rows: list[dict[str, Any]], rss_rounds: list[dict[str, int]]) -> dict[str, Any]:
    by = {(r["workload"], r["latency_ms"], r["target"]): r for r in rows}
    ceiling = by[("constant", 0, "constant")]["rps"]
    out: dict[str, Any] = {"ceiling_rps": ceiling, "service_vs_minimal": {}, "vs_ceiling": {}}
    for (workload, latency, target), row in by.items():
        if target != "service":
            continue
        key = f"{workload}@{latency}ms"
        minimal = by.get((workload, latency, "minimal"))
        if minimal:
            out["service_vs_minimal"][key] = {
                "rps": row["rps"] / minimal["rps"],
                "cpu": row["cpu_ms_per_request"] / minimal["cpu_ms_per_request"],
            }
        out["vs_ceiling"][key] = row["rps"] / ceiling
    for latency in LATENCIES:
        service, sample = (
            by.get(("first", latency, "service")),
            by.get(("first", latency, "sample")),
        )
        if service and sample:
            out[f"service_vs_sample_first@{latency}ms"] = service["rps"] / sample["rps"]
    for target in ("service", "minimal"):
        first, repeat = by.get(("first", 0, target)), by.get(("repeat", 0, target))
        if first and repeat:
            out[f"repeat_vs_first_{target}"] = repeat["rps"] / first["rps"]
    if len(rss_rounds) >= 2:
        first_rss, last_rss = rss_rounds[0]["service"], rss_rounds[-1]["service"]
        out["service_rss_growth_between_rounds"] = last_rss / first_rss - 1
    return out


def goal_checks(rows: list[dict[str, Any]], r: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """The issue's targets, as (target, met, measured)."""
    by = {(row["workload"], row["latency_ms"], row["target"]): row for row in rows}
    vs = r["service_vs_minimal"]
    checks = []

    def ratio(key: str, floor: float, what: str) -> None:
        if key in vs:
            value = vs[key]["rps"]
            checks.append((f"{what} >= {floor}x minimal", value >= floor, f"{value:.2f}x"))

    ratio("first@0ms", 0.7, "first-time completions, latency 0:")
    if "service_vs_sample_first@0ms" in r:
        value = r["service_vs_sample_first@0ms"]
        checks.append(
            (
                "first-time completions, latency 0: >= 2x PortOne's Flask sample",
                value >= 2,
                f"{value:.2f}x",
            )
        )
    ratio("first@50ms", 0.95, "first-time completions, latency 50 ms:")
    if ("first", 50, "service") in by:
        p99 = by[("first", 50, "service")]["p99_ms"]
        checks.append(
            ("first-time completions, latency 50 ms: p99 <= 90 ms", p99 <= 90, f"{p99:.1f} ms")
        )
    if "repeat_vs_first_service" in r:
        value = r["repeat_vs_first_service"]
        checks.append(("repeated >= 2x first-time completions", value >= 2, f"{value:.2f}x"))
    ratio("webhook@0ms", 0.7, "signed webhooks, latency 0:")
    ratio("webhook@50ms", 0.7, "signed webhooks, latency 50 ms:")
    peak = max((row["peak_rss_mib"] for row in rows if row["target"] == "service"), default=0)
    checks.append(("service peak RSS <= 150 MiB", peak <= 150, f"{peak:.0f} MiB"))
    if "service_rss_growth_between_rounds" in r:
        growth = r["service_rss_growth_between_rounds"]
        checks.append(("service RSS growth between rounds < 5%", growth < 0.05, f"{growth:+.1%}"))
    return checks


def print_table(rows: list[dict[str, Any]], r: dict[str, Any]) -> None:
    ceiling = r["ceiling_rps"]
    header = (
        f"{'workload':26} {'PortOne':>7} {'target':8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'CPU ms/req':>10} {'peak RSS':>9} {'conn/1k':>7} {'errors':>6} {'vs minimal':>10} "
        f"{'vs ceiling':>10}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    order = {"first": 0, "repeat": 1, "webhook": 2, "constant": 3}
    for row in sorted(rows, key=lambda x: (x["latency_ms"], order[x["workload"]], x["target"])):
        key = f"{row['workload']}@{row['latency_ms']}ms"
        vs_minimal = ""
        if row["target"] == "service" and key in r["service_vs_minimal"]:
            vs_minimal = f"{r['service_vs_minimal'][key]['rps']:.2f}x"
        print(
            f"{WORKLOADS[row['workload']]:26} {row['latency_ms']:>4} ms {row['target']:8} "
            f"{row['rps']:7.0f} {row['p50_ms']:7.1f} {row['p99_ms']:7.1f} "
            f"{row['cpu_ms_per_request']:10.2f} {row['peak_rss_mib']:6.0f} MiB "
            f"{row['db_connections_per_1k']:7.0f} {row['errors']:6} "
            f"{vs_minimal:>10} {row['rps'] / ceiling:9.2f}x"
        )


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=False)
        return done.stdout.decode().strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "app_files_changed_since_commit": len(
            git("status", "--porcelain", "--", "app").splitlines()
        ),
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


# ---------------------------------------------------------------- profile


def profile(bench: Bench, workload: str, seconds: float) -> dict[str, Any] | None:
    """py-spy on the service during one more round of `workload` (latency 0), not recorded."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        print("installing py-spy into .venv …", flush=True)
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        if subprocess.run([*pip, "py-spy"], check=False).returncode != 0:
            print("  py-spy could not be installed; no profile", flush=True)
            return None
    bench.set_latency(0)
    if workload == "repeat":  # orders to complete again, in case no round made any
        bench.measure("service", "first", round_no=0, seconds=2, record=False)
    raw = bench.load.scratch / "profile.raw"
    pid = str(bench.targets["service"].process.pid)
    # Blocking samples (whole stacks; --nonblocking tears them), at a modest rate.
    argv = [str(spy), "record", "-p", pid, "-d", f"{seconds:g}", "-r", "100", "--threads"]
    argv += ["-f", "raw", "-o", str(raw), *os.environ.get("BENCH_PYSPY_ARGS", "").split()]
    spy_process = bench.procs.start("py-spy", argv, cpu=LOAD_CPU)
    time.sleep(0.5)
    bench.measure("service", workload, round_no=0, seconds=seconds - 1, record=False)
    spy_process.wait(timeout=seconds + 30)
    bench.procs.finished(spy_process)
    if not raw.exists():
        print(f"  py-spy recorded nothing:\n{bench.procs.log_tail('py-spy')}", flush=True)
        return None
    shutil.copyfile(raw, PROFILE.with_suffix(".raw"))  # collapsed stacks, for a flame graph
    return {"workload": workload, **summarise_profile(raw.read_text())}


def _frame(frame: str) -> tuple[str, str]:
    """("function (short/path.py)", package) of a py-spy frame "function (path/file.py:line)"."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", f"{ROOT}/", "lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    package = where.split("/", 1)[0].removesuffix(".py") if "/" in where else where
    return f"{name} ({where})", package.removeprefix("<frozen ").rstrip(">")


def summarise_profile(text: str) -> dict[str, Any]:
    """Self time, time by package and inclusive time of the app's own functions.

    Shares are of the event-loop thread's busy samples (py-spy leaves idle waits out);
    other threads (getaddrinfo and other executor work) are summed separately.
    """
    stacks: list[tuple[str, list[str], int]] = []
    per_thread: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack.startswith("thread (") or not count_text.isdigit():
            continue
        thread, *frames = stack.split(";")
        thread_name = thread.split(": ", 1)[-1]
        stacks.append((thread_name, frames, int(count_text)))
        per_thread[thread_name] += int(count_text)
    main = "MainThread"
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    other_threads: Counter[str] = Counter()
    for thread_name, frames, count in stacks:
        if not frames:
            continue
        named = [_frame(f) for f in frames]
        if thread_name != main:
            other_threads[named[-1][0]] += count
            continue
        own[named[-1][0]] += count
        packages[named[-1][1]] += count
        for frame in {frame for frame, _ in named if "(app/" in frame}:
            inclusive[frame] += count
    busy = max(per_thread[main], 1)

    def top(counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(key, value / busy) for key, value in counter.most_common(n)]

    return {
        "event_loop_samples": per_thread[main],
        "other_thread_samples": sum(per_thread.values()) - per_thread[main],
        "self": top(own, 20),
        "by_package": top(packages, 12),
        "app_inclusive": top(inclusive, 20),
        "other_threads": top(other_threads, 5),
    }


def write_profile(summary: dict[str, Any]) -> None:
    lines = [
        f"py-spy, the service during {WORKLOADS[summary['workload']]} at PortOne latency 0:",
        f"{summary['event_loop_samples']} busy samples of the event-loop thread, "
        f"{summary['other_thread_samples']} of other threads (shares below: of the former)",
    ]
    sections = (
        ("self time", "self"),
        ("self time by package", "by_package"),
        ("inclusive time of the app's functions", "app_inclusive"),
        ("other threads (thread-pool workers, mostly waiting), self time", "other_threads"),
    )
    for title, key in sections:
        lines.append(f"\n{title}:")
        lines += [f"  {share:6.1%}  {frame}" for frame, share in summary[key]]
    PROFILE.write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines), flush=True)


# ---------------------------------------------------------------- main


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


def ensure_bench_packages() -> None:
    # Flask is not among the service's dependencies; the sample-shaped yardstick needs it.
    import importlib.util

    if importlib.util.find_spec("flask") is None:
        print("installing flask into .venv (bench only) …", flush=True)
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "flask>=3"], check=True)


def start_servers(
    procs: Processes, database_url: str, secret: str, workers: int
) -> tuple[dict[str, Target], int]:
    python = sys.executable
    standin_port = free_port()
    standin = procs.start(
        "standin",
        [
            python,
            str(BENCH / "portone_standin.py"),
            "--port",
            f"{standin_port}",
            "--store-id",
            STORE_ID,
        ],
        cpu=LOAD_CPU,  # PortOne is another machine: it must not take the service's core
    )
    wait_listening(procs, "standin", standin, standin_port)
    env = {
        **os.environ,
        "PORTONE_MODE": "live",
        "DATABASE_URL": database_url,
        "PORTONE_API_BASE_URL": f"http://127.0.0.1:{standin_port}",
        "PORTONE_API_SECRET": "bench-portone-secret",
        "PORTONE_STORE_ID": STORE_ID,
        "PORTONE_CHANNEL_KEY": "channel-key-bench",
        "PORTONE_WEBHOOK_SECRETS": secret,
        "INTERNAL_API_TOKEN": secrets.token_urlsafe(24),
        "RECONCILE_INTERVAL_SECONDS": "0",
        # As many connections as requests in flight, spread over the workers.
        "DATABASE_POOL_SIZE": str(-(-CONCURRENCY // workers)),
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),  # INFO: a line per request
        "PYTHONUNBUFFERED": "1",
    }
    for proxy in ("http_proxy", "https_proxy", "all_proxy"):
        env.pop(proxy, None)  # loopback only
        env.pop(proxy.upper(), None)
    argvs = {
        "service": [python, "-m", "app", "serve", "--workers", f"{workers}", "--port"],
        "minimal": [python, str(BENCH / "minimal_verifier.py"), "--port"],
        "sample": [python, str(BENCH / "flask_sample.py"), "--port"],
        "constant": [python, str(BENCH / "constant.py"), "--port"],
    }
    started = {}
    for name, argv in argvs.items():
        port = free_port()
        # Several workers get every core; the load generator then shares one with them.
        cpu = SERVER_CPU if name != "service" or workers == 1 else f"0-{workers - 1}"
        started[name] = Target(name, port, procs.start(name, [*argv, str(port)], cpu=cpu, env=env))
    for name, target in started.items():
        wait_listening(procs, name, target.process, target.port)
    status, body = http("GET", started["service"].port, "/readyz")
    if status != 200:
        raise SystemExit(f"the service is not ready: {status} {body!r}")
    return started, standin_port


def migrate(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        env=env,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"alembic upgrade head failed:\n{done.stderr.decode()}")


def ensure_wrk() -> None:
    """wrk from Debian's packages when this is a root shell with apt-get; else loadgen.py."""
    if shutil.which("wrk") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    print("installing wrk (apt-get) …", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        if subprocess.run(step, env=env, capture_output=True, check=False).returncode != 0:
            print("  could not install wrk: using bench/loadgen.py", flush=True)
            return


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
    servers, standin_port = start_servers(procs, database_url, secret, args.workers)
    measured = machine()  # the commit and the state of app/ the service started from
    load = Load(procs, scratch)
    db = Database(database_url)
    run = Bench(procs, load, db, servers, standin_port, secret, seconds)
    print(
        f"{rounds} round(s) of {seconds:g} s runs, C={CONCURRENCY}, load by {load.tool} on core "
        f"{LOAD_CPU}, servers on core {SERVER_CPU}, database {DATABASE}"
        + (
            f"; the service: {args.workers} workers on cores 0-{args.workers - 1}"
            if args.workers > 1
            else ""
        ),
        flush=True,
    )
    run.set_latency(0)
    for name in ("service", "minimal", "sample"):
        run.measure(name, "first", round_no=0, seconds=1, record=False)  # warm-up
    run.measure("constant", "constant", round_no=0, seconds=1, record=False)
    for round_no in range(1, rounds + 1):
        print(f"round {round_no}", flush=True)
        run.round(round_no, args.workloads, args.latencies)
    profile_summary = profile(run, args.profile, min(seconds, 8) + 1) if args.profile else None

    rows = summarise(run.runs)
    found = ratios(rows, run.rss_after_round) if rows else {}
    checks = goal_checks(rows, found) if rows else []
    if rows:
        print_table(rows, found)
        print(f"\nceiling (constant JSON): {found['ceiling_rps']:.0f} req/s")
        for name in ("service", "minimal"):
            if f"repeat_vs_first_{name}" in found:
                print(f"repeated vs first-time ({name}): {found[f'repeat_vs_first_{name}']:.2f}x")
        print("\nissue 8 targets:")
        for what, met, value in checks:
            print(f"  [{'met ' if met else 'MISS'}] {what}  ({value})")
    check = db.check(run.batches)
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
    results = {
        "command": "python3 bench/run.py" + (" --quick" if args.quick else ""),
        "machine": measured,
        "config": {
            "seconds": seconds,
            "rounds": rounds,
            "concurrency": CONCURRENCY,
            "load_generator": load.tool,
            "server_core": SERVER_CPU,
            "service_workers": args.workers,
            "load_core": LOAD_CPU,
            "portone_latencies_ms": args.latencies,
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


def _workloads(value: str) -> list[str]:
    chosen = value.split(",")
    unknown = set(chosen) - {"first", "repeat", "webhook"}
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown workload(s): {', '.join(sorted(unknown))}")
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of 3 s runs")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="first",
        choices=["first", "repeat", "webhook"],
        help="py-spy the service during one more round of this workload (default first)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="service worker processes (default 1)"
    )
    parser.add_argument(
        "--workloads",
        type=_workloads,
        default=["first", "repeat", "webhook"],
        help="comma-separated subset of first,repeat,webhook (default all; for quick iteration)",
    )
    parser.add_argument(
        "--latencies",
        type=lambda value: [int(ms) for ms in value.split(",")],
        default=list(LATENCIES),
        help="comma-separated PortOne latencies in ms (default 0,50)",
    )
    parser.add_argument("--keep-db", action="store_true", help=f"keep the {DATABASE} database")
    parser.add_argument("--seconds", type=float, help="seconds per run (default 10, quick 3)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 2, quick 1)")
    args = parser.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 2)
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
    finally:
        print(f"({time.monotonic() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
