"""PortOne's webhooks: verify, store raw, claim once, then sync through the one path.

A delivery row is claimed by the request that inserts it (or that finds it FAILED, or
abandoned past its lease), so duplicates, concurrent or not, reach PortOne once. This
module writes every row of `webhook_deliveries`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from enum import StrEnum

import asyncpg
from sqlalchemy import Integer, Interval, String, bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from app import logs, metrics, standard_webhooks
from app.db import Database, Query, one_of
from app.errors import WebhookPayloadInvalid, WebhookSignatureInvalid
from app.orders.tables import orders
from app.payments.sync import PaymentSync, Source
from app.payments.tables import webhook_deliveries as deliveries
from app.portone.errors import PaymentNotFound
from app.portone.webhooks import InvalidPayload, WebhookEvent, parse_event
from app.text import without_nul

LEASE = timedelta(seconds=60)


class DeliveryStatus(StrEnum):
    PROCESSING = "PROCESSING"
    PROCESSED = "PROCESSED"
    IGNORED = "IGNORED"
    INVALID = "INVALID"
    FAILED = "FAILED"


class Outcome(StrEnum):
    PROCESSED = "processed"
    IGNORED = "ignored"
    DUPLICATE = "duplicate"


_now = func.now()
_lease = _now + bindparam("lease", type_=Interval)
_by_webhook_id = deliveries.c.webhook_id == bindparam("webhook_id", type_=String)
_abandoned = or_(
    deliveries.c.status == DeliveryStatus.FAILED,
    (deliveries.c.status == DeliveryStatus.PROCESSING) & (deliveries.c.lease_until < _now),
)

_claim = insert(deliveries).values(
    webhook_id=bindparam("webhook_id", type_=String),
    body=bindparam("body", type_=String),
    type=bindparam("type", type_=String),
    payment_id=bindparam("payment_id", type_=String),
    status=DeliveryStatus.PROCESSING,
    lease_until=_lease,
)
CLAIM = Query(
    _claim.on_conflict_do_update(
        index_elements=[deliveries.c.webhook_id],
        set_={
            "status": DeliveryStatus.PROCESSING,
            "lease_until": _lease,
            "attempts": deliveries.c.attempts + 1,
        },
        where=_abandoned,
    ).returning(deliveries.c.id)
)
STORE_INVALID = Query(
    insert(deliveries)
    .values(
        webhook_id=bindparam("webhook_id", type_=String),
        body=bindparam("body", type_=String),
        status=DeliveryStatus.INVALID,
        outcome=bindparam("outcome", type_=String),
        processed_at=_now,
    )
    .on_conflict_do_nothing(index_elements=[deliveries.c.webhook_id])
)
FINISH = Query(
    update(deliveries)
    .where(_by_webhook_id)
    .values(
        status=bindparam("status", type_=String),
        outcome=bindparam("outcome", type_=String),
        processed_at=_now,
        lease_until=None,
    )
)
# A failed or abandoned delivery whose payment the reconciler has just re-read.
SETTLE = Query(
    update(deliveries)
    .where(
        deliveries.c.payment_id == bindparam("payment_id", type_=String),
        one_of(deliveries.c.status, [DeliveryStatus.FAILED, DeliveryStatus.PROCESSING]),
        or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < _now),
    )
    .values(
        status=DeliveryStatus.PROCESSED,
        outcome="applied by the reconciler",
        processed_at=_now,
        lease_until=None,
    )
)
# One row per payment, its order's least recently reconciled first: a payment that keeps
# failing goes to the back of the list after each pass instead of holding its head.
UNPROCESSED = Query(
    select(deliveries.c.payment_id)
    .join(orders, orders.c.payment_id == deliveries.c.payment_id, isouter=True)
    .where(deliveries.c.payment_id.is_not(None), _abandoned)
    .group_by(deliveries.c.payment_id)
    .order_by(
        func.max(orders.c.reconciled_at).asc().nulls_first(), func.min(deliveries.c.received_at)
    )
    .limit(bindparam("limit", type_=Integer))
)
OLDEST_UNPROCESSED = Query(
    select(func.extract("epoch", _now - func.min(deliveries.c.received_at))).where(
        one_of(deliveries.c.status, [DeliveryStatus.PROCESSING, DeliveryStatus.FAILED])
    )
)


class WebhookInbox:
    def __init__(
        self,
        database: Database,
        sync: PaymentSync,
        *,
        keys: Sequence[bytes],
        store_id: str,
        tolerance_seconds: int,
    ) -> None:
        self._database = database
        self._sync = sync
        self._keys = keys
        self._store_id = store_id
        self._tolerance = tolerance_seconds

    async def receive(self, headers: Mapping[str, str], body: bytes) -> Outcome:
        try:
            webhook_id = standard_webhooks.verify(
                self._keys, headers, body, now=time.time(), tolerance_seconds=self._tolerance
            )
        except standard_webhooks.InvalidSignature as exc:
            metrics.webhooks.labels("invalid").inc()
            raise WebhookSignatureInvalid(str(exc)) from None
        logs.bind(webhook_id=webhook_id)
        try:
            event = parse_event(body)
        except InvalidPayload as exc:
            metrics.webhooks.labels("invalid").inc()
            async with self._database.connect() as db:
                await STORE_INVALID.run(
                    db, webhook_id=webhook_id, body=_text_of(body), outcome=str(exc)
                )
            raise WebhookPayloadInvalid(str(exc)) from None
        if not await self._claim(webhook_id, body, event):
            outcome = Outcome.DUPLICATE
        else:
            outcome = await self.process(webhook_id, event)
        metrics.webhooks.labels(outcome).inc()
        return outcome

    async def process(self, webhook_id: str, event: WebhookEvent) -> Outcome:
        """Apply a claimed delivery; a failure marks it FAILED (to be retried) and re-raises."""
        try:
            status, detail = await self._apply(event)
        except Exception as exc:
            metrics.webhooks.labels("failed").inc()
            await self._finish(webhook_id, DeliveryStatus.FAILED, f"{type(exc).__name__}: {exc}")
            raise
        await self._finish(webhook_id, status, detail)
        return Outcome.PROCESSED if status == DeliveryStatus.PROCESSED else Outcome.IGNORED

    async def _apply(self, event: WebhookEvent) -> tuple[DeliveryStatus, str]:
        if not event.is_transaction or event.payment_id is None:
            return DeliveryStatus.IGNORED, f"{event.type}: not a payment event"
        if event.store_id is not None and event.store_id != self._store_id:
            return DeliveryStatus.IGNORED, f"store {event.store_id} is not ours"
        order = await self._sync.find(event.payment_id)
        if order is None:
            return DeliveryStatus.IGNORED, "no order has this paymentId"
        try:
            observation = await self._sync.sync(event.payment_id, Source.WEBHOOK, seen=order)
        except PaymentNotFound:
            return DeliveryStatus.IGNORED, "PortOne has no payment with this id"
        return (
            DeliveryStatus.PROCESSED,
            f"{observation.from_status} -> {observation.order.status}",
        )

    async def _claim(self, webhook_id: str, body: bytes, event: WebhookEvent) -> bool:
        async with self._database.connect() as db:
            claimed = await CLAIM.value(
                db,
                webhook_id=webhook_id,
                body=_text_of(body),
                type=event.type[:100],
                payment_id=event.payment_id,
                lease=LEASE,
            )
        return claimed is not None

    async def _finish(self, webhook_id: str, status: DeliveryStatus, outcome: str) -> None:
        async with self._database.connect() as db:
            await FINISH.run(db, webhook_id=webhook_id, status=status, outcome=outcome[:2000])


async def settle_deliveries(db: asyncpg.Connection, payment_id: str) -> None:
    """A failed webhook whose payment has just been re-fetched has served its purpose."""
    await SETTLE.run(db, payment_id=payment_id)


async def unprocessed_payment_ids(db: asyncpg.Connection, limit: int) -> list[str]:
    """Payments whose webhook failed, or whose handler vanished past its lease; those the
    reconciler looked at least recently first."""
    return [row["payment_id"] for row in await UNPROCESSED.rows(db, limit=limit)]


async def oldest_unprocessed_age(db: asyncpg.Connection) -> float:
    """Seconds the oldest stored webhook has waited (0 when none)."""
    return float(await OLDEST_UNPROCESSED.value(db) or 0)


def _text_of(body: bytes) -> str:
    # Kept for people to read, never verified again: what Postgres text cannot hold goes.
    return without_nul(body.decode("utf-8", errors="replace"))
