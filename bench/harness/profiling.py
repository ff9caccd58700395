"""py-spy on the service during one more run of a workload, summed up where time went."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.harness.servers import PIP
from bench.harness.settings import LOAD_CPU, PROFILE, ROOT
from bench.harness.workloads import WORKLOADS, Bench


def profile(bench: Bench, workload: str, seconds: float) -> dict[str, Any] | None:
    """py-spy on the service during one more round of `workload` (latency 0), not recorded."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        print("installing py-spy into .venv …", flush=True)
        if subprocess.run([*PIP, "py-spy"], check=False).returncode != 0:
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
