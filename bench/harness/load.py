"""The load: wrk with bench/load.lua (else bench/loadgen.py) on its own core, C connections.

Each run reads its requests from a file, one a line: a paymentId to complete, or a
signed webhook prepared here, so that signing costs the load generator nothing.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from app.standard_webhooks import decode_secret, sign
from bench.harness.settings import BENCH, CONCURRENCY, LOAD_CPU, STORE_ID
from tests.processes import Processes, ProcessFailed


def webhook_lines(payment_ids: list[str], secret: str) -> list[str]:
    """A Transaction.Paid webhook for each payment, signed with `secret` and fresh ids."""
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
        """What the load generator saw of `seconds` of `mode` requests: its `BENCH` line."""
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
        raise ProcessFailed(f"the load generator reported nothing:\n{self.procs.log_tail('load')}")
