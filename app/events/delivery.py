"""Delivering order events to ORDER_EVENTS_URL: signed, in order per order, retried.

One replica delivers at a time (a Postgres advisory lock). Each event is POSTed with its
own id as `webhook-id`, signed the Standard Webhooks way; a non-2xx answer, a timeout or
a connection error schedules the next attempt with exponential backoff and jitter, for
a little over a day. Later events of an order wait until the earlier ones are delivered.
Delivery is at least once: a crash between the POST and the bookkeeping sends again,
with the same id, which is how consumers de-duplicate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import aliased

from app.background import advisory_lock
from app.db import Sessions
from app.events.models import DeliveryState, OutboxEvent
from app.portone.webhooks import sign

logger = logging.getLogger(__name__)

LOCK_KEY = 0x6F7264657273  # "orders"
BATCH = 100
MAX_BATCHES = 50
CONCURRENCY = 8
TIMEOUT = httpx.Timeout(10.0, connect=3.0)
FIRST_RETRY = timedelta(seconds=5)
LONGEST_WAIT = timedelta(hours=1)
GIVE_UP_AFTER = timedelta(hours=26)


def next_attempt(attempts: int, created_at: datetime, now: datetime) -> datetime | None:
    """5 s, 10 s, 20 s … capped at an hour, ±20 % jitter; None once the event is 26 h old."""
    wait = min(FIRST_RETRY * 2 ** (attempts - 1), LONGEST_WAIT)
    wait *= random.uniform(0.8, 1.2)  # noqa: S311 (jitter, not secrecy)
    at = now + wait
    return None if at - created_at > GIVE_UP_AFTER else at


@dataclass
class DeliverySummary:
    delivered: int = 0
    failed: int = 0
    skipped: bool = False


class EventDelivery:
    def __init__(
        self,
        engine: AsyncEngine,
        sessions: Sessions,
        http: httpx.AsyncClient,
        *,
        url: str,
        key: bytes,
    ) -> None:
        self._engine = engine
        self._sessions = sessions
        self._http = http
        self._url = url
        self._key = key

    async def deliver_due(self) -> DeliverySummary:
        """Deliver what is due now, one batch after another, until nothing is left."""
        async with advisory_lock(self._engine, LOCK_KEY) as locked:
            if not locked:
                return DeliverySummary(skipped=True)
            summary = DeliverySummary()
            for _ in range(MAX_BATCHES):
                batch = await self._due()
                if not batch:
                    break
                await self._deliver_batch(batch, summary)
            return summary

    async def _due(self) -> list[OutboxEvent]:
        earlier = aliased(OutboxEvent)
        blocked = exists().where(
            and_(
                earlier.order_id == OutboxEvent.order_id,
                earlier.seq < OutboxEvent.seq,
                earlier.state != DeliveryState.DELIVERED,
            )
        )
        query = (
            select(OutboxEvent)
            .where(
                OutboxEvent.state != DeliveryState.DELIVERED,
                OutboxEvent.next_attempt_at <= func.now(),
                ~blocked,
            )
            .order_by(OutboxEvent.seq)
            .limit(BATCH)
        )
        async with self._sessions() as session:
            return list(await session.scalars(query))

    async def _deliver_batch(self, batch: list[OutboxEvent], summary: DeliverySummary) -> None:
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(event: OutboxEvent) -> None:
            async with limit:
                error = await self._post(event)
            await self._record(event, error)
            if error is None:
                summary.delivered += 1
            else:
                summary.failed += 1

        # `_due` returns at most one undelivered event per order, so these never race.
        await asyncio.gather(*(one(event) for event in batch))

    async def _post(self, event: OutboxEvent) -> str | None:
        body = json.dumps(event.payload, separators=(",", ":"), ensure_ascii=False).encode()
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": event.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, event.id, timestamp, body),
        }
        try:
            response = await self._http.post(self._url, content=body, headers=headers)
        except httpx.TransportError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        if response.is_success:
            return None
        return f"HTTP {response.status_code}: {response.text[:200]}"

    async def _record(self, event: OutboxEvent, error: str | None) -> None:
        now = datetime.now(UTC)
        attempts = event.attempts + 1
        values: dict[str, object]
        if error is None:
            values = {"state": DeliveryState.DELIVERED, "delivered_at": now, "last_error": None}
        else:
            retry_at = next_attempt(attempts, event.created_at, now)
            values = {
                "state": DeliveryState.FAILED,
                "last_error": error,
                "next_attempt_at": retry_at,
            }
            logger.warning("order event %s not delivered: %s", event.id, error)
        statement = (
            update(OutboxEvent)
            .where(OutboxEvent.seq == event.seq)
            .values(attempts=attempts, **values)
        )
        async with self._sessions() as session, session.begin():
            await session.execute(statement)


def new_events_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
