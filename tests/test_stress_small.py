"""The chaos command, small and bounded: `scripts/stress.py` with 40 orders for 15 s.

Two service processes on one database, a PortOne stand-in failing at random, the
database's connections cut while PortOne announces payments no order has, disputes,
refunds PortOne holds past a reconciler pass, manual confirmations with lost answers,
cancels racing them, orders expiring as they are paid, then the final reconciler passes; every
guarantee it checks must hold (exit code 0), and the counts it prints must say so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.chaos.checks import CHECKS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ORDERS = 40


def test_small_stress_run_keeps_every_guarantee() -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "stress.py"),
            f"--orders={ORDERS}",
            "--seconds=15",
            "--seed=20261127",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = run.stdout + run.stderr
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, output[-5000:]
    counts = json.loads(lines[-1].removeprefix("RESULT "))

    assert run.returncode == 0, output[-5000:]
    assert counts["ok"] is True
    assert counts["orders checked"] == ORDERS
    for name in CHECKS:  # every guarantee the run checks
        assert counts[name] == 0, (name, output[-5000:])
    transitions = counts["order events (outbox rows)"]
    assert transitions >= ORDERS // 2  # most orders moved at least once
    assert counts["order events delivered (distinct webhook-ids)"] == transitions
    assert counts["disputes at PortOne"] > 0
    assert counts["webhooks of payments no order has"] > 0
    assert counts["database connections cut"] > 0
    assert counts["manual confirmations PortOne charged"] > 0
    assert counts["cancels answered by the service"] > 0
    assert counts["orders with an expiresAt"] > 0
    held = counts["payments whose refunds PortOne held"]
    assert held > counts["payments a reconciler list takes a pass"]
    assert "processes stopped" in run.stdout
