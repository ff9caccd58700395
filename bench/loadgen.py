"""The load generator bench/run.py falls back to without wrk: asyncio + aiohttp, C workers.

    python bench/loadgen.py http://127.0.0.1:8000 complete requests.txt --connections 32

Same request file and modes as bench/load.lua, same `BENCH {json}` line at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import aiohttp
import uvloop

JSON = {"Content-Type": "application/json"}
NOT_PAID = 409  # every answer of the hot mode: its payment is never paid


async def drive(url: str, mode: str, lines: list[str], connections: int, seconds: float) -> dict:
    latencies: list[float] = []
    counts = {"sent": 0, "status": 0, "read": 0, "timeout": 0, "unexpected": 0}
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:

        def next_request() -> tuple[str, str, dict[str, str], str | None]:
            index = counts["sent"] % max(len(lines), 1)
            counts["sent"] += 1
            if mode == "constant":
                return "GET", "/", {}, None
            line = lines[index]
            if mode in ("complete", "hot"):
                return "POST", "/payments/complete", JSON, json.dumps({"paymentId": line})
            webhook_id, timestamp, signature, body = line.split("\t", 3)
            headers = {
                **JSON,
                "webhook-id": webhook_id,
                "webhook-timestamp": timestamp,
                "webhook-signature": signature,
            }
            return "POST", "/webhooks/portone", headers, body

        async def worker(deadline: float) -> None:
            while time.monotonic() < deadline:
                method, path, headers, body = next_request()
                started = time.monotonic()
                try:
                    async with session.request(method, path, headers=headers, data=body) as r:
                        await r.read()
                        counts["status"] += r.status > 399
                        counts["unexpected"] += mode == "hot" and r.status != NOT_PAID
                except TimeoutError:
                    counts["timeout"] += 1
                    continue
                except aiohttp.ClientError:
                    counts["read"] += 1
                    continue
                latencies.append(time.monotonic() - started)

        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(*(worker(deadline) for _ in range(connections)))
        duration = time.monotonic() - started
    latencies.sort()

    def percentile(p: float) -> int:
        if not latencies:
            return 0
        return int(latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))] * 1e6)

    return {
        "requests": len(latencies),
        "duration_us": int(duration * 1e6),
        "status_errors": counts["status"],
        "connect_errors": 0,
        "read_errors": counts["read"],
        "write_errors": 0,
        "timeouts": counts["timeout"],
        "p50_us": percentile(50),
        "p90_us": percentile(90),
        "p99_us": percentile(99),
        "max_us": int(latencies[-1] * 1e6) if latencies else 0,
        "mean_us": sum(latencies) / max(len(latencies), 1) * 1e6,
        "sent": counts["sent"],
        "wrapped": max(counts["sent"] - 1, 0) // len(lines) if lines else 0,
        "unexpected": counts["unexpected"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("mode", choices=["constant", "complete", "hot", "webhook"])
    parser.add_argument("file", type=Path)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    lines = [line for line in args.file.read_text().splitlines() if line]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(drive(args.url, args.mode, lines, args.connections, args.seconds))
    print("BENCH " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
