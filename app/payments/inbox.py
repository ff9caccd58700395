"""PortOne's webhooks: verify, store raw, claim once, then sync through the one path.

A delivery row is claimed by the request that inserts it (or that finds it FAILED, or
abandoned past its lease), so duplicates, concurrent or not, reach PortOne once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncEngine

from app import logs, metrics
from app.db import driver_connection
from app.errors import WebhookPayloadInvalid, WebhookSignatureInvalid
from app.orders import rows
from app.payments.models import DeliveryStatus
from app.payments.sync import PaymentSync, Source
from app.portone import webhooks
from app.portone.errors import PaymentNotFound
from app.portone.webhooks import WebhookEvent

LEASE = timedelta(seconds=60)

CLAIM = """INSERT INTO webhook_deliveries AS d
        (webhook_id, body, type, payment_id, status, lease_until)
    VALUES ($1, $2, $3, $4, 'PROCESSING', now() + $5::interval)
    ON CONFLICT (webhook_id) DO UPDATE
        SET status = 'PROCESSING', lease_until = now() + $5::interval, attempts = d.attempts + 1
        WHERE d.status = 'FAILED' OR (d.status = 'PROCESSING' AND d.lease_until < now())
    RETURNING id"""
STORE_INVALID = """INSERT INTO webhook_deliveries (webhook_id, body, status, outcome, processed_at)
    VALUES ($1, $2, 'INVALID', $3, now())
    ON CONFLICT (webhook_id) DO NOTHING"""
FINISH = """UPDATE webhook_deliveries
    SET status = $2, outcome = $3, processed_at = now(), lease_until = NULL
    WHERE webhook_id = $1"""


class Outcome(StrEnum):
    PROCESSED = "processed"
    IGNORED = "ignored"
    DUPLICATE = "duplicate"


class WebhookInbox:
    def __init__(
        self,
        engine: AsyncEngine,
        sync: PaymentSync,
        *,
        keys: Sequence[bytes],
        store_id: str,
        tolerance_seconds: int,
    ) -> None:
        self._engine = engine
        self._sync = sync
        self._keys = keys
        self._store_id = store_id
        self._tolerance = tolerance_seconds

    async def receive(self, headers: Mapping[str, str], body: bytes) -> Outcome:
        try:
            webhook_id = webhooks.verify(
                self._keys, headers, body, now=time.time(), tolerance_seconds=self._tolerance
            )
        except webhooks.InvalidSignature as exc:
            metrics.webhooks.labels("invalid").inc()
            raise WebhookSignatureInvalid(str(exc)) from None
        logs.bind(webhook_id=webhook_id)
        try:
            event = webhooks.parse_event(body)
        except webhooks.InvalidPayload as exc:
            metrics.webhooks.labels("invalid").inc()
            await self._store_invalid(webhook_id, body, str(exc))
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
        order = await rows.find_by_payment_id(self._engine, event.payment_id)
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
        async with driver_connection(self._engine) as db:
            claimed = await db.fetchval(
                CLAIM, webhook_id, _text_of(body), event.type[:100], event.payment_id, LEASE
            )
        return claimed is not None

    async def _store_invalid(self, webhook_id: str, body: bytes, reason: str) -> None:
        async with driver_connection(self._engine) as db:
            await db.execute(STORE_INVALID, webhook_id, _text_of(body), reason)

    async def _finish(self, webhook_id: str, status: DeliveryStatus, outcome: str) -> None:
        async with driver_connection(self._engine) as db:
            await db.execute(FINISH, webhook_id, status, outcome[:2000])


def _text_of(body: bytes) -> str:
    # Postgres text cannot hold NUL; the raw body is kept for people to read, not re-verified.
    return body.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
