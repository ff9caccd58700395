"""Refunds PortOne has not settled yet, settled from PortOne's truth.

A refund PortOne answered REQUESTED becomes SUCCEEDED or FAILED when a snapshot of its
payment shows its cancellation settled (a `Transaction.Cancelled`, `PartialCancelled` or
`CancelPending` webhook, or the reconciler, brings it through the one path).
A refund whose PortOne call never answered, and that nobody retried for a while, is
settled from the payment's cancellations too: the one it made, if PortOne holds one no
other refund claims, or FAILED if PortOne has none.

A refund that ends FAILED is recorded in the order's history, queued as
`order.refund_failed` for the shop, and counted (`refunds_failed_total`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

import asyncpg

from app import metrics
from app.db import Database
from app.orders import store as orders_store
from app.orders.order import HistoryEntry, Order
from app.outbox.writer import Outbox
from app.portone.models import CancellationStatus, Payment, PaymentCancellation
from app.refunds import store
from app.refunds.refund import Refund, RefundStatus

logger = logging.getLogger(__name__)

SOURCE = "refund"
FAILED_EVENT = "order.refund_failed"
# A refund whose PortOne call never answered is settled from the payment after this long
# without a retry of its Idempotency-Key.
ABANDONED_AFTER = timedelta(minutes=10)
REFUND_STATUS_OF: dict[str, RefundStatus] = {
    CancellationStatus.SUCCEEDED: RefundStatus.SUCCEEDED,
    CancellationStatus.FAILED: RefundStatus.FAILED,
}


class Settlement:
    def __init__(self, database: Database, outbox: Outbox | None) -> None:
        self._database = database
        self._outbox = outbox

    async def settle(self, order: Order, payment: Payment) -> int:
        """Settle what `payment` shows of the order's unsettled refunds (the one path calls
        this after applying a snapshot of an order that has any); how many it settled."""
        if not any(listed["status"] == RefundStatus.REQUESTED for listed in order.refunds):
            return 0
        settled = 0
        async with self._database.transaction() as db:
            await orders_store.lock(db, order.id)  # the order, then its refunds: one lock order
            for cancellation in payment.cancellations:
                status = REFUND_STATUS_OF.get(cancellation.status)
                if status is None or cancellation.id is None:
                    continue
                outcome = f"PortOne settled cancellation {cancellation.id}: {cancellation.status}"
                for refund in await store.settle(db, order.id, cancellation.id, status, outcome):
                    await self.settled(db, refund)
                    settled += 1
            for refund in await store.abandoned(db, order.id, ABANDONED_AFTER):
                settled += await self._settle_abandoned(db, refund, payment)
        return settled

    async def settled(self, db: asyncpg.Connection, refund: Refund) -> None:
        """Record a refund that has just been settled, in `db`'s transaction."""
        if refund.status != RefundStatus.FAILED:
            return
        # Its callers hold the order's lock already (the order, then its refunds,
        # everywhere); taking it here keeps that true for a new caller, and the order's
        # events in sequence.
        order = await orders_store.lock(db, refund.order_id)
        assert order is not None  # orders are never deleted
        detail = f"refund {refund.id} of {refund.amount} {order.currency} FAILED: {refund.outcome}"
        entry = HistoryEntry(SOURCE, order.portone_status, order.status, order.status, detail)
        await orders_store.add_history(db, order.id, entry)
        if self._outbox is not None:
            await self._outbox.add(db, order, FAILED_EVENT)
        metrics.refunds_failed.inc()
        logger.warning("order %s: %s", order.id, detail)

    async def _settle_abandoned(
        self, db: asyncpg.Connection, refund: Refund, payment: Payment
    ) -> bool:
        made = unclaimed_match(refund, payment.cancellations, await store.claimed_ids(db, refund))
        if made is None:
            status, outcome, cancellation_id = (
                RefundStatus.FAILED,
                "PortOne never answered and holds no cancellation for it",
                None,
            )
        else:
            status = REFUND_STATUS_OF.get(made.status, RefundStatus.REQUESTED)
            outcome = f"PortOne holds cancellation {made.id}: {made.status}"
            cancellation_id = made.id
        settled = await store.settle_abandoned(
            db, refund, status, outcome, cancellation_id, ABANDONED_AFTER
        )
        if settled is None:
            return False
        await self.settled(db, settled)
        return settled.settled_at is not None


def unclaimed_match(
    refund: Refund, cancellations: Sequence[PaymentCancellation], claimed: set[str]
) -> PaymentCancellation | None:
    """A cancellation of this refund's amount and reason that no other refund claims."""
    for cancellation in cancellations:
        if cancellation.id in claimed:
            continue
        if (cancellation.total_amount, cancellation.reason) == (refund.amount, refund.reason):
            return cancellation
    return None
