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
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from app import standard_webhooks, tls
from app.background import advisory_lock
from app.db import Database
from app.outbox import store
from app.outbox.event import OutboxEvent
from app.times import backoff, utc_now

logger = logging.getLogger(__name__)

LOCK_KEY = 0x6F7264657273  # "orders"
MAX_BATCHES = 50
CONCURRENCY = 8
TIMEOUT = httpx.Timeout(10.0, connect=3.0)
FIRST_RETRY = timedelta(seconds=5)
LONGEST_WAIT = timedelta(hours=1)
GIVE_UP_AFTER = timedelta(hours=26)


def next_attempt(attempts: int, created_at: datetime, now: datetime) -> datetime | None:
    """Doubling from FIRST_RETRY up to LONGEST_WAIT; None once the event is older than
    GIVE_UP_AFTER (so a receiver that was down for a day still gets it)."""
    at = now + backoff(attempts, FIRST_RETRY, LONGEST_WAIT)
    return None if at - created_at > GIVE_UP_AFTER else at


@dataclass
class DeliverySummary:
    delivered: int = 0
    failed: int = 0
    skipped: bool = False


class EventDelivery:
    def __init__(
        self, database: Database, http: httpx.AsyncClient, *, url: str, key: bytes
    ) -> None:
        self._database = database
        self._http = http
        self._url = url
        self._key = key

    async def deliver_due(self) -> DeliverySummary:
        """Deliver what is due now, one batch after another, until nothing is left."""
        async with advisory_lock(self._database, LOCK_KEY) as locked:
            if not locked:
                return DeliverySummary(skipped=True)
            summary = DeliverySummary()
            for _ in range(MAX_BATCHES):
                async with self._database.connect() as db:
                    batch = await store.due(db)
                if not batch:
                    break
                await self._deliver_batch(batch, summary)
            return summary

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

        # A batch holds at most one undelivered event per order, so these never race.
        await asyncio.gather(*(one(event) for event in batch))

    async def _post(self, event: OutboxEvent) -> str | None:
        body = json.dumps(event.payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = standard_webhooks.headers(self._key, event.id, body)
        try:
            response = await self._http.post(self._url, content=body, headers=headers)
        except httpx.TransportError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        if response.is_success:
            return None
        return f"HTTP {response.status_code}: {response.text[:200]}"

    async def _record(self, event: OutboxEvent, error: str | None) -> None:
        now = utc_now()
        retry_at = None
        if error is not None:
            retry_at = next_attempt(event.attempts + 1, event.created_at, now)
            logger.warning("order event %s not delivered: %s", event.id, error)
        async with self._database.connect() as db:
            await store.record_attempt(db, event, error=error, now=now, retry_at=retry_at)


def new_events_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False, verify=tls.context())
