"""PortOne's webhooks: verify, store raw, claim once, then sync through the one path.

A delivery row is claimed by the request that inserts it (or that finds it FAILED, or
abandoned past its lease), so duplicates, concurrent or not, reach PortOne once; its
statements are `app.payments.store`'s.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from enum import StrEnum

from app import logs, metrics, standard_webhooks
from app.db import Database
from app.errors import OrderNotFound, WebhookPayloadInvalid, WebhookSignatureInvalid
from app.payments import store
from app.payments.store import WebhookStatus
from app.payments.sync import PaymentSync, Source
from app.portone.errors import PaymentNotFound
from app.portone.webhooks import InvalidPayload, WebhookEvent, parse_event
from app.text import without_nul

LEASE = timedelta(seconds=60)


class Outcome(StrEnum):
    PROCESSED = "processed"
    IGNORED = "ignored"
    DUPLICATE = "duplicate"


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
                await store.store_invalid(
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
            await self._finish(webhook_id, WebhookStatus.FAILED, f"{type(exc).__name__}: {exc}")
            raise
        await self._finish(webhook_id, status, detail)
        return Outcome.PROCESSED if status == WebhookStatus.PROCESSED else Outcome.IGNORED

    async def _apply(self, event: WebhookEvent) -> tuple[WebhookStatus, str]:
        if not event.is_transaction or event.payment_id is None:
            return WebhookStatus.IGNORED, f"{event.type}: not a payment event"
        if event.store_id is not None and event.store_id != self._store_id:
            return WebhookStatus.IGNORED, f"store {event.store_id} is not ours"
        try:
            _, observation = await self._sync.look(event.payment_id, Source.WEBHOOK)
        except OrderNotFound:
            return WebhookStatus.IGNORED, "no order has this paymentId"
        except PaymentNotFound:
            return WebhookStatus.IGNORED, "PortOne has no payment with this id"
        assert observation is not None  # every order is looked at, waiting or not
        return (
            WebhookStatus.PROCESSED,
            f"{observation.from_status} -> {observation.order.status}",
        )

    async def _claim(self, webhook_id: str, body: bytes, event: WebhookEvent) -> bool:
        async with self._database.connect() as db:
            return await store.claim(
                db,
                webhook_id=webhook_id,
                body=_text_of(body),
                event_type=event.type[:100],
                payment_id=event.payment_id,
                lease=LEASE,
            )

    async def _finish(self, webhook_id: str, status: WebhookStatus, outcome: str) -> None:
        async with self._database.connect() as db:
            await store.finish(db, webhook_id=webhook_id, status=status, outcome=outcome)


def _text_of(body: bytes) -> str:
    # Kept for people to read, never verified again: what Postgres text cannot hold goes.
    return without_nul(body.decode("utf-8", errors="replace"))
