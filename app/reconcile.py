"""The reconciler: catches whatever the browser's call and the webhooks missed.

One pass, run by one replica at a time (a Postgres advisory lock), with bounded work so a
backlog spreads over passes and nothing is skipped:

1. close the orders past their expiry (and look at each once more: a payment made just
   before it is given back, as one made after it would be);
2. re-fetch the orders still open that are due a look (PENDING between a minute and a
   week old, and AWAITING_DEPOSIT; looked at 1, 2, 4 … minutes old, then hourly), those
   seen least recently first; and the payments with a failed webhook, a
   compensation PortOne holds REQUESTED, or a refund PortOne has not settled (each list
   at most ORDERS_PER_PASS long);
3. read PortOne's list of payments whose status changed since the last pass (console
   cancellations), page by page from where the last pass stopped;
4. retry the compensations owed and due (at most ORDERS_PER_PASS).

Everything is applied through `PaymentSync`, like the endpoints do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app import logs, metrics
from app.background import advisory_lock
from app.db import Database, database_unavailable
from app.errors import OrderNotCancellable
from app.orders import store as orders_store
from app.payments import store as payments_store
from app.payments.compensation import Compensator
from app.payments.sync import PaymentSync, Source
from app.portone.client import PortOneClient
from app.portone.errors import PaymentNotFound, PortOneError
from app.portone.models import Payment
from app.refunds import store as refunds_store
from app.times import rfc3339, utc_now

logger = logging.getLogger(__name__)

LOCK_KEY = 0x706F72746F6E65  # "portone"
CONCURRENCY = 8
PENDING_MIN_AGE = timedelta(minutes=1)
PENDING_MAX_AGE = timedelta(days=7)
FIRST_WAIT = timedelta(minutes=1)  # an open order is looked at 1, 2, 4 … minutes old,
LONGEST_WAIT = timedelta(hours=1)  # then hourly: an abandoned cart costs tens of reads a day
ORDERS_PER_PASS = 1_000
FIRST_LOOKBACK = timedelta(days=1)
CHANGES_OVERLAP = timedelta(minutes=5)  # PortOne's clock and ours may disagree a little
PAGE_SIZE = 100
PAGES_PER_PASS = 20
CHECKPOINT = "payments-changed"


@dataclass
class PassSummary:
    checked: int = 0
    changed: int = 0
    settled: int = 0  # refunds, and compensations PortOne held, that it found settled
    failed: int = 0
    compensated: int = 0
    closed: int = 0  # orders closed at their expiry
    skipped: bool = False  # another replica was running a pass

    @property
    def ok(self) -> bool:
        return self.failed == 0


@dataclass(frozen=True)
class Checkpoint:
    """PortOne's changed payments are read up to `changed_until`; a window being read over
    several passes resumes at `resume_from` (its page `resume_page`) until `window_until`."""

    changed_until: datetime
    resume_from: datetime | None = None
    window_until: datetime | None = None
    resume_page: int = 0


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
            expired = await self._close_expired(summary)
            to_reread = [*expired, *await self._payments_to_reread()]
            await self._refetch(list(dict.fromkeys(to_reread)), summary)
            await self._read_changes(summary)
            await self._compensate(summary)
        metrics.reconciler_passes.labels("ok" if summary.ok else "failed").inc()
        metrics.reconciler_repairs.inc(summary.changed)
        logger.info("reconciler pass: %s", summary)
        return summary

    async def _close_expired(self, summary: PassSummary) -> list[str]:
        """Close the open orders past their expiry; their paymentIds, to be looked at."""
        async with self._database.connect() as db:
            order_ids = await payments_store.expired_order_ids(db, ORDERS_PER_PASS)
        closed = []
        for order_id in order_ids:
            if self._stopping.is_set():
                break
            try:
                with logs.bound(order_id=order_id):
                    order = await self._sync.close(order_id, Source.RECONCILE, "expired")
            except OrderNotCancellable:
                continue  # it took money a moment before: no longer open
            except Exception as exc:
                _failed(summary, exc, "closing expired order %s failed", order_id)
                continue
            summary.closed += 1
            closed.append(order.payment_id)
        return closed

    async def _payments_to_reread(self) -> list[str]:
        async with self._database.connect() as db:
            await payments_store.ignore_orphan_deliveries(db)
            found = [
                *await payments_store.waiting_payment_ids(
                    db,
                    pending_min_age=PENDING_MIN_AGE,
                    pending_max_age=PENDING_MAX_AGE,
                    first_wait=FIRST_WAIT,
                    longest_wait=LONGEST_WAIT,
                    limit=ORDERS_PER_PASS,
                ),
                *await payments_store.unprocessed_payment_ids(db, ORDERS_PER_PASS),
                *await orders_store.held_compensation_payment_ids(db, ORDERS_PER_PASS),
                *await refunds_store.unsettled_payment_ids(db, ORDERS_PER_PASS),
            ]
        return found

    async def _refetch(self, payment_ids: Iterable[str], summary: PassSummary) -> None:
        limit = asyncio.Semaphore(CONCURRENCY)
        looked_at: list[str] = []

        async def one(payment_id: str) -> None:
            async with limit:
                if self._stopping.is_set():
                    return
                summary.checked += 1
                looked_at.append(payment_id)
                try:
                    metrics.reconciler_reads.labels("payment").inc()
                    try:
                        observation = await self._sync.sync(payment_id, Source.RECONCILE)
                        summary.changed += observation.changed
                        summary.settled += observation.settled
                    except PaymentNotFound:
                        pass  # the payment window was never opened: nothing to do yet
                    await self._settle_deliveries(payment_id)
                except Exception as exc:
                    _failed(summary, exc, "reconciling payment %s failed", payment_id)

        await asyncio.gather(*(one(payment_id) for payment_id in payment_ids))
        async with self._database.connect() as db:
            await payments_store.mark_reconciled(db, looked_at)

    async def _compensate(self, summary: PassSummary) -> None:
        for order_id in await self._compensator.due(ORDERS_PER_PASS):
            if self._stopping.is_set():
                return
            with logs.bound(order_id=order_id):
                summary.compensated += await self._compensator.compensate(order_id)

    async def _settle_deliveries(self, payment_id: str) -> None:
        async with self._database.connect() as db:
            await payments_store.resolve_deliveries(db, payment_id)

    async def _read_changes(self, summary: PassSummary) -> None:
        """Apply PortOne's list of payments whose status changed, in the order they
        changed: a page at a time, each pass going on from where the last one stopped."""
        checkpoint = await self._checkpoint()
        if checkpoint.window_until is None:  # a new window: since the last one, to now
            checkpoint = Checkpoint(
                checkpoint.changed_until,
                resume_from=checkpoint.changed_until - CHANGES_OVERLAP,
                window_until=utc_now(),
            )
        for _ in range(PAGES_PER_PASS):
            if self._stopping.is_set():
                return
            try:
                metrics.reconciler_reads.labels("page").inc()
                page = await self._portone.list_payments(_changes_query(self._store_id, checkpoint))
            except Exception as exc:
                _failed(summary, exc, "reading PortOne's changed payments failed")
                return
            if page.unreadable:
                logger.warning("%d of PortOne's changed payments were unreadable", page.unreadable)
            if not await self._apply_changes(page.items, summary):
                return  # the next pass reads this page again
            checkpoint = _after(
                checkpoint, page.items, full=page.unreadable + len(page.items) >= PAGE_SIZE
            )
            await self._save(checkpoint)
            if checkpoint.window_until is None:
                return

    async def _apply_changes(self, payments: list[Payment], summary: PassSummary) -> bool:
        """Apply what changed on one page; False if an outage kept any of it from being
        applied, so the page is read again. A change that fails otherwise (a bug) is
        logged and left behind: one payment must not hold up the list for good."""
        complete = True
        by_id = {payment.id: payment for payment in payments}
        async with self._database.connect() as db:
            applied = await payments_store.applied_snapshots(db, list(by_id))
        for payment_id, (portone_status, applied_at) in applied.items():
            payment = by_id[payment_id]
            if payment.status == portone_status and payment.status_changed_at == applied_at:
                continue
            summary.checked += 1
            try:
                with logs.bound():
                    observation = await self._sync.apply_read(payment_id, payment, Source.RECONCILE)
            except Exception as exc:
                if _failed(summary, exc, "applying PortOne's change to %s failed", payment_id):
                    complete = False
                continue
            summary.changed += observation.changed
            summary.settled += observation.settled
        return complete

    async def _checkpoint(self) -> Checkpoint:
        async with self._database.connect() as db:
            saved = await payments_store.read_checkpoint(db, CHECKPOINT)
        if saved is None:
            return Checkpoint(utc_now() - FIRST_LOOKBACK)
        return Checkpoint(
            saved["changed_until"],
            saved["resume_from"],
            saved["window_until"],
            saved["resume_page"],
        )

    async def _save(self, checkpoint: Checkpoint) -> None:
        async with self._database.connect() as db:
            await payments_store.save_checkpoint(
                db,
                CHECKPOINT,
                changed_until=checkpoint.changed_until,
                resume_from=checkpoint.resume_from,
                window_until=checkpoint.window_until,
                resume_page=checkpoint.resume_page,
            )


def _after(checkpoint: Checkpoint, items: list[Payment], *, full: bool) -> Checkpoint:
    """Where reading goes on after a page: the window is done after a page that is not
    full; otherwise from the last change read (the page, sorted by change, ends there).

    Only when a whole page changed at the same instant does the page number move on:
    PortOne pages by number, and a payment that changes again while a window is read
    leaves it, which would shift later pages under a number.
    """
    assert checkpoint.window_until is not None
    if not full:
        return Checkpoint(checkpoint.window_until)
    last = max((p.status_changed_at for p in items if p.status_changed_at), default=None)
    if last is None or last == checkpoint.resume_from:
        return Checkpoint(
            checkpoint.changed_until,
            checkpoint.resume_from,
            checkpoint.window_until,
            checkpoint.resume_page + 1,
        )
    return Checkpoint(checkpoint.changed_until, last, checkpoint.window_until, 0)


def _failed(summary: PassSummary, exc: Exception, message: str, *args: object) -> bool:
    """Count a failure; True for an outage of PortOne or the database, expected and retried
    next pass (a warning); anything else is a bug worth its traceback."""
    summary.failed += 1
    outage = isinstance(exc, PortOneError) or database_unavailable(exc)
    if outage:
        logger.warning(message + ": %s", *args, exc)
    else:
        logger.exception(message, *args)
    return outage


def _changes_query(store_id: str, checkpoint: Checkpoint) -> dict[str, Any]:
    assert checkpoint.resume_from is not None
    assert checkpoint.window_until is not None
    return {
        "page": {"number": checkpoint.resume_page, "size": PAGE_SIZE},
        "filter": {
            "storeId": store_id,
            "timestampType": "STATUS_CHANGED_AT",
            "from": rfc3339(checkpoint.resume_from),
            "until": rfc3339(checkpoint.window_until),
            "sortBy": "STATUS_CHANGED_AT",
            "sortOrder": "ASC",
        },
    }
