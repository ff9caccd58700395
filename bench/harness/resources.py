"""What a server costs: CPU time, threads and memory from /proc, and its core's busy time."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness.settings import SERVER_CPU

CLK_TCK = os.sysconf("SC_CLK_TCK")


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

    def cpu_ms_since(self, before: Sample) -> float:
        return (self.cpu_ticks - before.cpu_ticks) * 1000 / CLK_TCK

    def system_share_since(self, before: Sample) -> float:
        return (self.system_ticks - before.system_ticks) / max(self.cpu_ticks - before.cpu_ticks, 1)

    def core_busy_since(self, before: Sample) -> float:
        return (self.core_busy - before.core_busy) / max(self.core_total - before.core_total, 1)


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
