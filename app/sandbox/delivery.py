"""Webhook delivery as PortOne does it: Standard Webhooks signed, in order, retried."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from typing import Any

import httpx

from app import standard_webhooks
from app.sandbox.payments import EmulatedPayment
from app.times import rfc3339

logger = logging.getLogger(__name__)

ATTEMPTS = 5
FIRST_BACKOFF = 0.2
# PortOne posts a webhook a moment after the payment window closes, so the browser's
# completion usually reaches the service first.
DELAY = 1.0

LEGACY_STATUS = {
    "Transaction.Paid": "Paid",
    "Transaction.VirtualAccountIssued": "VirtualAccountIssued",
    "Transaction.Failed": "Failed",
    "Transaction.Cancelled": "Cancelled",
    "Transaction.PartialCancelled": "PartialCancelled",
}


CANCELLATION_EVENTS = frozenset(
    {"Transaction.Cancelled", "Transaction.PartialCancelled", "Transaction.CancelPending"}
)


def webhook_bodies(kind: str, payment: EmulatedPayment, store_id: str) -> list[dict[str, Any]]:
    """What PortOne sends for one change: the 2024-04-25 body, and the 2024-01-01 one for
    the kinds that version knows."""
    data: dict[str, Any] = {
        "storeId": store_id,
        "paymentId": payment.id,
        "transactionId": payment.transaction_id,
    }
    if payment.cancellations and kind in CANCELLATION_EVENTS:
        data["cancellationId"] = payment.cancellations[-1].id
    current = {"type": kind, "timestamp": rfc3339(payment.updated_at), "data": data}
    if kind not in LEGACY_STATUS:
        return [current]
    legacy = {
        "payment_id": payment.id,
        "tx_id": payment.transaction_id,
        "status": LEGACY_STATUS[kind],
    }
    return [current, legacy]


class WebhookSender:
    """One worker, so webhooks arrive in the order the changes happened, each `delay`
    seconds after its change."""

    def __init__(
        self, client: httpx.AsyncClient, key: bytes, store_id: str, *, delay: float
    ) -> None:
        self._client = client
        self._key = key
        self._store_id = store_id
        self._delay = delay
        self._queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.delivered = 0
        self.abandoned = 0

    def notify(self, kind: str, payment: EmulatedPayment) -> None:
        due = time.monotonic() + self._delay
        for body in webhook_bodies(kind, payment, self._store_id):
            self._queue.put_nowait((due, json.dumps(body, ensure_ascii=False).encode()))

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run())

    async def drain(self) -> None:
        """Wait until everything queued so far was delivered or given up on."""
        await self._queue.join()

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            due, body = await self._queue.get()
            try:
                await asyncio.sleep(due - time.monotonic())
                await self._deliver(body)
            finally:
                self._queue.task_done()

    async def _deliver(self, body: bytes) -> None:
        webhook_id = "sandbox_" + secrets.token_hex(12)
        for attempt in range(ATTEMPTS):
            headers = standard_webhooks.headers(self._key, webhook_id, body)
            try:
                response = await self._client.post(
                    "/webhooks/portone", content=body, headers=headers
                )
                if response.is_success:
                    self.delivered += 1
                    return
                logger.warning("sandbox webhook answered %s", response.status_code)
            except Exception:
                logger.exception("sandbox webhook delivery failed")
            await asyncio.sleep(FIRST_BACKOFF * 2**attempt)
        self.abandoned += 1
        logger.warning("sandbox webhook %s abandoned after %d attempts", webhook_id, ATTEMPTS)
