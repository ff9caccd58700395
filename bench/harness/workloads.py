"""The workloads, and one measured run of a workload on a target.

first     first-time completions: each request a different PENDING order
repeat    repeated completions of PAID orders (answered from the database)
webhook   signed webhooks, each a new webhook-id for a PENDING order
hot       C clients completing ONE PENDING order whose payment PortOne answers READY:
          every request is answered 409 PAYMENT_NOT_PAID, and the stand-in counts the
          PortOne reads it took
constant  the ceiling: a FastAPI endpoint returning constant JSON
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from bench.harness.database import Database
from bench.harness.load import Load, webhook_lines
from bench.harness.resources import sample
from bench.harness.servers import StandIn, Target
from bench.portone_standin import UNPAID_PREFIX
from tests.processes import Processes

WORKLOADS = {
    "first": "first-time completions",
    "repeat": "repeated completions",
    "webhook": "signed webhooks",
    "hot": "hot payment (one, unpaid)",
    "constant": "constant JSON (ceiling)",
}
MEASURED = ("first", "repeat", "webhook", "hot")
# Requests/s assumed before a workload has been measured; sizes the first batches of orders.
EXPECTED_RPS = {0: 3000.0, 50: 800.0}


@dataclass
class Requests:
    """What the load generator sends in a run, and the batch of orders it is meant to pay."""

    mode: str
    lines: list[str]
    prefix: str | None = None


@dataclass
class Bench:
    procs: Processes
    load: Load
    db: Database
    targets: dict[str, Target]
    standin: StandIn
    secret: str
    seconds: float
    runs: list[dict[str, Any]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    rss_after_round: list[dict[str, int]] = field(default_factory=list)
    best_rps: dict[tuple[str, int], float] = field(default_factory=dict)
    latency: int = -1

    def set_latency(self, ms: int) -> None:
        if ms != self.latency:
            self.standin.set_latency(ms)
            self.latency = ms

    def requests_for(self, workload: str, seconds: float) -> int:
        """Fresh orders enough for a run: three times the best rate any target has shown here,
        warm-ups included (the machine's speed moves by that much between runs on a shared
        machine; a run that wraps around measures repeats)."""
        rps = self.best_rps.get((workload, self.latency), EXPECTED_RPS[self.latency])
        return int(rps * seconds * 3) + 300

    def prepare(self, target_name: str, workload: str, seconds: float) -> Requests:
        """The requests of one run of `workload`, with its orders made first."""
        if workload == "first" and target_name == "sample":
            # It keeps payments in a dict: fresh ids are first-time completions to it.
            tag = secrets.token_hex(4)
            count = self.requests_for(workload, seconds)
            return Requests("complete", [f"sample-{tag}-{i}" for i in range(count)])
        if workload == "first":
            prefix, ids = self.db.create_pending(self.requests_for(workload, seconds))
            return Requests("complete", ids, prefix)
        if workload == "repeat":
            ids = self.db.paid_payment_ids(20_000)
            assert ids, "no PAID orders to complete again"
            return Requests("complete", ids)
        if workload == "webhook":
            prefix, ids = self.db.create_pending(self.requests_for(workload, seconds))
            return Requests("webhook", webhook_lines(ids, self.secret), prefix)
        if workload == "hot":
            _, ids = self.db.create_pending(1, payment_prefix=UNPAID_PREFIX)
            return Requests("hot", ids)
        return Requests("constant", [])

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
        prepared = self.prepare(target_name, workload, seconds)
        sessions_before = self.db.sessions()
        reads_before = self.standin.settled_reads()  # none of the last run's
        before = sample(target.process.pid)
        result = self.load.run(target.port, prepared.mode, prepared.lines, seconds)
        after = sample(target.process.pid)
        reads = self.standin.reads() - reads_before
        # Minus the harness's own two connections (this count and the one before it).
        new_sessions = max(self.db.sessions() - sessions_before - 2, 0)
        answered = max(result["requests"], 1)
        duration = result["duration_us"] / 1e6
        # A hot run is answered 409 by design; only other answers are errors there.
        wrong = result["unexpected"] if workload == "hot" else result["status_errors"]
        errors = wrong + result["connect_errors"] + result["read_errors"]
        errors += result["write_errors"] + result["timeouts"]
        run = {
            "round": round_no,
            "target": target_name,
            "workload": workload,
            "latency_ms": self.latency if workload != "constant" else 0,
            "seconds": duration,
            "requests": result["requests"],
            "errors": errors,
            "rps": result["requests"] / duration,
            "p50_ms": result["p50_us"] / 1000,
            "p90_ms": result["p90_us"] / 1000,
            "p99_ms": result["p99_us"] / 1000,
            "max_ms": result["max_us"] / 1000,
            "cpu_ms_per_request": after.cpu_ms_since(before) / answered,
            "system_cpu_share": after.system_share_since(before),
            "threads": after.threads,
            "core0_busy": after.core_busy_since(before),
            "rss_mib": after.rss / 2**20,
            "peak_rss_mib": after.hwm / 2**20,
            "db_connections_opened": new_sessions,
            "portone_reads": reads,
            "wrapped": result["wrapped"],
        }
        if prepared.prefix is not None:
            # Which orders this run was meant to pay, for the check at the end.
            self.batches.append(
                {
                    "prefix": prepared.prefix,
                    "target": target_name,
                    "workload": workload,
                    "orders": len(prepared.lines),
                    "sent": result["sent"],
                    "ok": result["requests"] - result["status_errors"],
                }
            )
        key = (workload, self.latency)
        self.best_rps[key] = max(self.best_rps.get(key, 0.0), run["rps"])
        wrapped = result["wrapped"] and workload in ("first", "webhook")
        if wrapped:
            # Its later requests were repeats, which are cheaper: not a figure of this workload.
            print(f"  ! {target_name} {workload}: ran out of fresh orders; left out", flush=True)
        if record and not wrapped:
            self.runs.append(run)
        print(
            f"  {'r' + str(round_no) if record and not wrapped else '--'} {target_name:8} "
            f"{WORKLOADS[workload]:26} "
            f"{run['latency_ms']:>3} ms  {run['rps']:8.0f} req/s  "
            f"p50 {run['p50_ms']:6.1f}  p99 {run['p99_ms']:6.1f} ms  "
            f"{run['cpu_ms_per_request']:.2f} CPU ms/req ({run['system_cpu_share']:.0%} sys)  "
            f"{run['threads']} threads  core0 {run['core0_busy']:.0%}  "
            f"PortOne reads/req {reads / answered:.2f}  new DB conns {new_sessions}  "
            f"errors {errors}",
            flush=True,
        )
        if wrapped and record:  # again, with orders enough for the rate just seen
            return self.measure(target_name, workload, round_no=round_no, seconds=seconds)
        return run

    def round(
        self, round_no: int, figures: list[tuple[str, int]], seconds: float | None = None
    ) -> None:
        """One interleaved round: first-time completions and signed webhooks at PortOne
        latency 0 on both (the latter `seconds` long), then `figures`, the other (workload,
        latency) runs of this round, `seconds` long."""
        # Alternate who goes first, so neither always runs on a warmer (or fuller) database.
        order = ["service", "minimal"] if round_no % 2 else ["minimal", "service"]
        self.set_latency(0)
        for name in order:
            self.measure(name, "first", round_no=round_no)
        for name in order:
            self.measure(name, "webhook", round_no=round_no, seconds=seconds)
        for workload, latency in figures:
            if (workload, latency) == ("webhook", 0):
                continue  # measured above
            self.set_latency(latency)
            names = order + (["sample"] if workload == "first" else [])
            if (workload, latency) == ("first", 0):
                names = ["sample"]  # measured on both above
            for name in names:
                self.measure(name, workload, round_no=round_no, seconds=seconds)
        self.set_latency(0)
        if figures:
            self.measure("constant", "constant", round_no=round_no, seconds=seconds)
        self.rss_after_round.append(
            {name: sample(t.process.pid).rss for name, t in self.targets.items()}
        )
