"""The database's outages, while PortOne announces payments no order has.

Now and then PortOne posts webhooks for payments no order has (some it holds, paid
through another door of the store; some it has no record of), and then, for a couple
of seconds while they arrive, every connection the services hold is cut again and
again, as when Postgres restarts. The checks then want each of those deliveries settled
as ignored without a PortOne read, and the reconciler's passes after the faults
unfailed.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

EVERY = 5.0  # seconds between outages
CUTS_FOR = 2.0  # seconds an outage lasts
CUT_GAP = (0.1, 0.4)  # seconds between two cuts in an outage
ORPHANS_PER_OUTAGE = 3

# Every backend of this database but the caller's: the services, the reconciler CLI.
CUT = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND backend_type = 'client backend'
"""

Control = Callable[[str, dict[str, Any]], Awaitable[object]]


class Outages:
    def __init__(self, dsn: str, control: Control, seed: int) -> None:
        self.dsn = dsn
        self.control = control
        self.rng = random.Random(f"{seed}:outages")  # noqa: S311
        self.orphans: dict[str, bool] = {}  # paymentId -> whether PortOne holds it
        self.counts: Counter[str] = Counter()

    async def loop(self, until: float) -> None:
        connection = await asyncpg.connect(self.dsn)
        try:
            while time.monotonic() + EVERY < until:
                await asyncio.sleep(self.rng.uniform(0.5, 1.5) * EVERY)
                await self.outage(connection)
        finally:
            await connection.close()

    async def outage(self, connection: asyncpg.Connection) -> None:
        for _ in range(ORPHANS_PER_OUTAGE):
            await self.announce_orphan()
        ends = time.monotonic() + CUTS_FOR
        while time.monotonic() < ends:
            await asyncio.sleep(self.rng.uniform(*CUT_GAP))
            self.counts["connections cut"] += await connection.fetchval(CUT)
            self.counts["cuts"] += 1
        self.counts["outages"] += 1

    async def announce_orphan(self) -> None:
        payment_id = f"orphan-{secrets.token_hex(6)}"
        known = self.rng.random() < 0.5
        self.orphans[payment_id] = known
        body = {
            "paymentId": payment_id,
            "orderName": "paid elsewhere",
            "amount": self.rng.randrange(1_000, 100_000, 100),
            "currency": "KRW",
            "known": known,
        }
        await self.control("orphan", body)
        self.counts["orphans announced"] += 1
