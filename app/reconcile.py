"""The reconciler: catches whatever the browser's call and the webhooks missed.

One pass, run by one replica at a time (a Postgres advisory lock):

1. re-fetch every order still PENDING (older than a minute, younger than a week),
   every AWAITING_DEPOSIT order, and every payment whose webhook failed;
2. read PortOne's list of payments whose status changed since the last pass, which
   catches cancellations made in PortOne's console;
3. retry every compensation still owed.

Everything is applied through `PaymentSync`, like the endpoints do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, bindparam, select
from sqlalchemy.dialects.postgresql import insert

from app import logs, metrics
from app.background import advisory_lock
from app.db import Database, Query, database_unavailable
from app.orders import store
from app.payments import inbox
from app.payments.compensation import Compensator
from app.payments.sync import PaymentSync, Source
from app.payments.tables import reconciler_checkpoints as checkpoints
from app.portone.client import PortOneClient
from app.portone.errors import PaymentNotFound, PortOneError
from app.portone.models import Payment
from app.times import rfc3339, utc_now

logger = logging.getLogger(__name__)

LOCK_KEY = 0x706F72746F6E65  # "portone"
CONCURRENCY = 8
PENDING_MIN_AGE = timedelta(minutes=1)
PENDING_MAX_AGE = timedelta(days=7)
FIRST_LOOKBACK = timedelta(days=1)
CHANGES_OVERLAP = timedelta(minutes=5)  # PortOne's clock and ours may disagree a little
PAGE_SIZE = 100
MAX_PAGES = 100
CHECKPOINT = "payments-changed"

_by_name = checkpoints.c.name == bindparam("name", type_=String)
READ_CHECKPOINT = Query(select(checkpoints.c.changed_until).where(_by_name))
_until = bindparam("changed_until", type_=checkpoints.c.changed_until.type)
SAVE_CHECKPOINT = Query(
    insert(checkpoints)
    .values(name=bindparam("name", type_=String), changed_until=_until)
    .on_conflict_do_update(index_elements=[checkpoints.c.name], set_={"changed_until": _until})
)


@dataclass
class PassSummary:
    checked: int = 0
    changed: int = 0
    failed: int = 0
    compensated: int = 0
    skipped: bool = False  # another replica was running a pass

    @property
    def ok(self) -> bool:
        return self.failed == 0


class Reconciler:
    def __init__(
        self,
        database: Database,
        portone: PortOneClient,
        sync: PaymentSync,
        compensator: Compensator,
        *,
        store_id: str,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self._database = database
        self._portone = portone
        self._sync = sync
        self._compensator = compensator
        self._store_id = store_id
        self._stopping = stopping or asyncio.Event()

    async def run_pass(self) -> PassSummary:
        async with advisory_lock(self._database, LOCK_KEY) as locked:
            if not locked:
                metrics.reconciler_passes.labels("skipped").inc()
                return PassSummary(skipped=True)
            summary = PassSummary()
            await self._refetch(await self._unsettled_payment_ids(), summary)
            await self._read_changes(summary)
            await self._compensate(summary)
        metrics.reconciler_passes.labels("ok" if summary.ok else "failed").inc()
        metrics.reconciler_repairs.inc(summary.changed)
        logger.info("reconciler pass: %s", summary)
        return summary

    async def _unsettled_payment_ids(self) -> list[str]:
        async with self._database.connect() as db:
            orders = await store.unsettled_payment_ids(
                db, pending_min_age=PENDING_MIN_AGE, pending_max_age=PENDING_MAX_AGE
            )
            webhooks = await inbox.unprocessed_payment_ids(db)
        return list(dict.fromkeys([*orders, *webhooks]))

    async def _refetch(self, payment_ids: Iterable[str], summary: PassSummary) -> None:
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(payment_id: str) -> None:
            async with limit:
                if self._stopping.is_set():
                    return
                summary.checked += 1
                try:
                    observation = await self._sync.sync(payment_id, Source.RECONCILE)
                except PaymentNotFound:
                    await self._settle_deliveries(payment_id)
                    return  # the payment window was never opened: nothing to do yet
                except Exception as exc:
                    _failed(summary, exc, "reconciling payment %s failed", payment_id)
                    return
                summary.changed += observation.changed
                await self._settle_deliveries(payment_id)

        await asyncio.gather(*(one(payment_id) for payment_id in payment_ids))

    async def _compensate(self, summary: PassSummary) -> None:
        for order_id in await self._compensator.owed_order_ids():
            if self._stopping.is_set():
                return
            with logs.bound(order_id=order_id):
                summary.compensated += await self._compensator.compensate(order_id)

    async def _settle_deliveries(self, payment_id: str) -> None:
        async with self._database.connect() as db:
            await inbox.settle_deliveries(db, payment_id)

    async def _read_changes(self, summary: PassSummary) -> None:
        """Apply PortOne's list of payments whose status changed since the last pass."""
        until = utc_now()
        since = await self._checkpoint(until) - CHANGES_OVERLAP
        for number in range(MAX_PAGES):
            if self._stopping.is_set():
                return
            try:
                page = await self._portone.list_payments(
                    _changes_query(self._store_id, since, until, number)
                )
            except Exception as exc:
                _failed(summary, exc, "reading PortOne's changed payments failed")
                return
            if page.unreadable:
                logger.warning("%d of PortOne's changed payments were unreadable", page.unreadable)
            await self._apply_changes(page.items, summary)
            if not page.items or (number + 1) * PAGE_SIZE >= page.page.total_count:
                break
        await self._save_checkpoint(until)

    async def _apply_changes(self, payments: list[Payment], summary: PassSummary) -> None:
        by_id = {payment.id: payment for payment in payments}
        async with self._database.connect() as db:
            applied = await store.applied_snapshots(db, list(by_id))
        for payment_id, (portone_status, applied_at) in applied.items():
            payment = by_id[payment_id]
            if payment.status == portone_status and payment.status_changed_at == applied_at:
                continue
            summary.checked += 1
            try:
                with logs.bound():
                    observation = await self._sync.apply(payment_id, payment, Source.RECONCILE)
            except Exception as exc:
                _failed(summary, exc, "applying PortOne's change to %s failed", payment_id)
                continue
            summary.changed += observation.changed

    async def _checkpoint(self, now: datetime) -> datetime:
        async with self._database.connect() as db:
            saved: datetime | None = await READ_CHECKPOINT.value(db, name=CHECKPOINT)
        return saved or now - FIRST_LOOKBACK

    async def _save_checkpoint(self, until: datetime) -> None:
        async with self._database.connect() as db:
            await SAVE_CHECKPOINT.run(db, name=CHECKPOINT, changed_until=until)


def _failed(summary: PassSummary, exc: Exception, message: str, *args: object) -> None:
    """Count a failure; an outage of PortOne or the database is expected and retried next
    pass (a warning), anything else is a bug worth its traceback."""
    summary.failed += 1
    if isinstance(exc, PortOneError) or database_unavailable(exc):
        logger.warning(message + ": %s", *args, exc)
    else:
        logger.exception(message, *args)


def _changes_query(store_id: str, since: datetime, until: datetime, page: int) -> dict[str, Any]:
    return {
        "page": {"number": page, "size": PAGE_SIZE},
        "filter": {
            "storeId": store_id,
            "timestampType": "STATUS_CHANGED_AT",
            "from": rfc3339(since),
            "until": rfc3339(until),
        },
    }
