"""What every part of a bench run agrees on: where things are, the cores, C, the store."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results.json"
PROFILE = BENCH / "profile.txt"
DATABASE = "verifier_bench"
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
SERVER_CPU, LOAD_CPU = "0", "1"
STORE_ID = "store-bench-0001"
LATENCIES = (0, 50)
