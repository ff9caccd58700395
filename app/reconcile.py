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
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from app import logs, metrics
from app.background import advisory_lock
from app.db import Sessions, database_unavailable
from app.orders.models import Order, OrderStatus
from app.payments.compensation import Compensator
from app.payments.models import DeliveryStatus, ReconcilerCheckpoint, WebhookDelivery
from app.payments.sync import PaymentSync, Source
from app.portone.client import PortOneClient
from app.portone.errors import PaymentNotFound, PortOneError
from app.portone.models import Payment

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
        engine: AsyncEngine,
        sessions: Sessions,
        portone: PortOneClient,
        sync: PaymentSync,
        compensator: Compensator,
        *,
        store_id: str,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self._engine = engine
        self._sessions = sessions
        self._portone = portone
        self._sync = sync
        self._compensator = compensator
        self._store_id = store_id
        self._stopping = stopping or asyncio.Event()

    async def run_pass(self) -> PassSummary:
        async with advisory_lock(self._engine, LOCK_KEY) as locked:
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
        now = func.now()
        orders = select(Order.payment_id).where(
            or_(
                (Order.status == OrderStatus.PENDING)
                & (Order.created_at < now - PENDING_MIN_AGE)
                & (Order.created_at > now - PENDING_MAX_AGE),
                Order.status == OrderStatus.AWAITING_DEPOSIT,
            )
        )
        deliveries = select(WebhookDelivery.payment_id).where(
            WebhookDelivery.payment_id.is_not(None),
            or_(
                WebhookDelivery.status == DeliveryStatus.FAILED,
                (WebhookDelivery.status == DeliveryStatus.PROCESSING)
                & (WebhookDelivery.lease_until < now),
            ),
        )
        async with self._sessions() as session:
            found = await session.scalars(orders.union(deliveries))
            return [payment_id for payment_id in found if payment_id is not None]

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
        """A failed webhook whose payment has just been re-fetched has served its purpose."""
        statement = (
            update(WebhookDelivery)
            .where(
                WebhookDelivery.payment_id == payment_id,
                WebhookDelivery.status.in_([DeliveryStatus.FAILED, DeliveryStatus.PROCESSING]),
                or_(
                    WebhookDelivery.lease_until.is_(None),
                    WebhookDelivery.lease_until < func.now(),
                ),
            )
            .values(
                status=DeliveryStatus.PROCESSED,
                outcome="applied by the reconciler",
                processed_at=func.now(),
                lease_until=None,
            )
        )
        async with self._sessions() as session, session.begin():
            await session.execute(statement)

    async def _read_changes(self, summary: PassSummary) -> None:
        """Apply PortOne's list of payments whose status changed since the last pass."""
        until = datetime.now(UTC)
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
        async with self._sessions() as session:
            ours = await session.execute(
                select(Order.payment_id, Order.portone_status, Order.status_changed_at).where(
                    Order.payment_id.in_(by_id)
                )
            )
            rows = ours.all()
        for payment_id, portone_status, applied_at in rows:
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
        async with self._sessions() as session:
            saved = await session.get(ReconcilerCheckpoint, CHECKPOINT)
        return saved.changed_until if saved else now - FIRST_LOOKBACK

    async def _save_checkpoint(self, until: datetime) -> None:
        statement = insert(ReconcilerCheckpoint).values(name=CHECKPOINT, changed_until=until)
        statement = statement.on_conflict_do_update(
            index_elements=[ReconcilerCheckpoint.name], set_={"changed_until": until}
        )
        async with self._sessions() as session, session.begin():
            await session.execute(statement)


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
            "from": _rfc3339(since),
            "until": _rfc3339(until),
        },
    }


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
