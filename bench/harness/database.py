"""The bench's own access to the database: orders for each run, and the check at the end."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

ORDER = ("Waffle trainer 2", 10_000, "KRW")  # name, amount, currency: what the stand-in sells
T = TypeVar("T")

TOTALS = """
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


class Database:
    """Direct access for the harness: batches of orders, paid orders, the final check."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.batches = 0

    def _on_connection(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """`work` on a connection of its own (the harness is synchronous between runs)."""

        async def connected() -> T:
            for wait in (0.5, 1, 2, 4, 8, 15, 30):
                try:
                    connection = await asyncpg.connect(self.url)
                    break
                except asyncpg.TooManyConnectionsError:  # a neighbour's tests, for a moment
                    await asyncio.sleep(wait)
            else:
                connection = await asyncpg.connect(self.url)
            try:
                return await work(connection)
            finally:
                await connection.close()

        return asyncio.run(connected())

    def create_pending(self, count: int, payment_prefix: str = "pay_") -> tuple[str, list[str]]:
        """`count` new PENDING orders of 10000 KRW; their batch prefix and paymentIds."""
        self.batches += 1
        prefix = f"b{self.batches:03d}_"
        rows = [
            (f"ord_{prefix}{i:07d}", f"{payment_prefix}{prefix}{i:07d}", *ORDER)
            for i in range(count)
        ]

        async def insert(connection: asyncpg.Connection) -> None:
            await connection.copy_records_to_table(
                "orders",
                records=[(*row, "PENDING") for row in rows],
                columns=["id", "payment_id", "order_name", "amount", "currency", "status"],
            )
            await connection.execute("ANALYZE orders")

        self._on_connection(insert)
        return prefix, [row[1] for row in rows]

    def sessions(self) -> int:
        """Connections ever opened to this database (pool churn shows up here)."""

        async def select(connection: asyncpg.Connection) -> int:
            await connection.execute("SELECT pg_stat_clear_snapshot()")
            return int(
                await connection.fetchval(
                    "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
                )
            )

        return self._on_connection(select)

    def paid_payment_ids(self, limit: int) -> list[str]:
        async def select(connection: asyncpg.Connection) -> list[str]:
            rows = await connection.fetch(
                "SELECT payment_id FROM orders WHERE status = 'PAID' LIMIT $1", limit
            )
            return [row["payment_id"] for row in rows]

        return self._on_connection(select)

    def check(self, batches: list[dict[str, Any]]) -> dict[str, Any]:
        """Every PAID order went PENDING -> PAID exactly once; every 200 left a PAID order."""

        async def query(connection: asyncpg.Connection) -> dict[str, Any]:
            totals = await connection.fetchrow(TOTALS)
            assert totals is not None  # one row of counts, always
            per_batch = []
            for batch in batches:
                paid = await connection.fetchval(
                    "SELECT count(*) FROM orders WHERE id LIKE $1 AND status = 'PAID'",
                    f"ord_{batch['prefix']}%",
                )
                per_batch.append({**batch, "paid": paid})
            return {"totals": dict(totals), "batches": per_batch}

        result = self._on_connection(query)
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
