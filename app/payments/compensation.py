"""Undoing a rejected payment at PortOne, exactly once, and only done when PortOne shows it.

Only the transaction that moved an order to REJECTED marks its compensation OWED. Whoever
then runs it (the request that rejected, or the reconciler later) first claims a short
lease on the order in its own transaction, calls PortOne with no lock held, and records
the attempt in the order's history. PortOne answers a cancellation SUCCEEDED (done),
REQUESTED (held: never sent again while PortOne holds it; the one path settles it from the
payment's `cancellations` when a webhook or the reconciler brings the payment), or FAILED
(still owed, tried again at the next pass, then with backoff). A fresh snapshot before
every attempt, its Idempotency-Key and `currentCancellableAmount` keep a retry from
cancelling twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.db import Database
from app.orders import store as orders_store
from app.orders.order import HistoryEntry
from app.orders.status import CompensationStatus
from app.payments.sync import Source
from app.portone.client import PortOneClient
from app.portone.errors import PortOneApiError, PortOneError
from app.portone.models import CancellationStatus, Payment, PaymentStatus
from app.times import backoff, utc_now

logger = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
FIRST_RETRY = timedelta(minutes=1)
LONGEST_WAIT = timedelta(hours=1)
ALREADY_DONE = frozenset({"PAYMENT_ALREADY_CANCELLED"})


@dataclass(frozen=True)
class Attempt:
    """How one attempt left the compensation."""

    status: CompensationStatus
    detail: str
    cancellation_id: str | None = None

    @property
    def done(self) -> bool:
        return self.status == CompensationStatus.DONE


def next_attempt(attempts: int, now: datetime) -> datetime:
    """At the very next reconciler pass after the first failure (by the interval or run by
    hand: an operator expects what is owed done), then a minute, doubling up to an hour."""
    if attempts <= 1:
        return now
    return now + backoff(attempts - 1, FIRST_RETRY, LONGEST_WAIT)


class Compensator:
    def __init__(self, database: Database, portone: PortOneClient) -> None:
        self._database = database
        self._portone = portone

    async def due(self, limit: int) -> list[str]:
        """Up to `limit` orders whose compensation is owed and due now."""
        async with self._database.connect() as db:
            return await orders_store.due_compensations(db, limit)

    async def compensate(self, order_id: str, snapshot: Payment | None = None) -> bool:
        """Run an owed compensation if no one else is; True once PortOne shows it done.

        `snapshot` is the payment as the rejecting transaction saw it a moment ago; without
        one (a retry), the payment is fetched afresh.
        """
        async with self._database.connect() as db:
            claimed = await orders_store.claim_compensation(db, order_id, LEASE)
        if claimed is None:
            return False
        payment = snapshot
        try:
            payment = payment or await self._portone.get_payment(claimed.payment_id)
            attempt = await self._undo(payment, claimed.reason)
        except PortOneError as exc:
            attempt = Attempt(CompensationStatus.OWED, f"attempt failed ({exc}); owed again")
        await self._record(order_id, claimed.attempts, payment, attempt)
        return attempt.done

    async def _undo(self, payment: Payment, reason: str) -> Attempt:
        if payment.status == PaymentStatus.CANCELLED:
            return Attempt(CompensationStatus.DONE, "PortOne shows the payment cancelled")
        if payment.status == PaymentStatus.VIRTUAL_ACCOUNT_ISSUED:
            key = f"compensation-close-{payment.id}"
            await self._portone.close_virtual_account(payment.id, idempotency_key=key)
            return Attempt(CompensationStatus.DONE, "closed the virtual account at PortOne")
        if payment.status not in (PaymentStatus.PAID, PaymentStatus.PARTIAL_CANCELLED):
            return Attempt(
                CompensationStatus.OWED, f"nothing to undo while PortOne says {payment.status}"
            )
        held = [c for c in payment.cancellations if c.status == CancellationStatus.REQUESTED]
        if held:
            return _held(held[-1].id, "PortOne holds a REQUESTED cancellation; not sent again")
        amount = payment.cancellable_amount
        if amount == 0:
            return Attempt(CompensationStatus.DONE, "nothing is left to cancel at PortOne")
        try:
            cancellation = await self._portone.cancel_payment(
                payment.id,
                reason=f"payment failed verification ({reason})",
                current_cancellable_amount=amount,
                idempotency_key=_cancel_key(payment),
            )
        except PortOneApiError as exc:
            if exc.type in ALREADY_DONE:
                return Attempt(CompensationStatus.DONE, "PortOne says it is already cancelled")
            raise
        what = f"cancellation of {amount} {payment.currency}"
        if cancellation.status == CancellationStatus.SUCCEEDED:
            return Attempt(CompensationStatus.DONE, f"{what} SUCCEEDED at PortOne")
        if cancellation.status == CancellationStatus.FAILED:
            return Attempt(CompensationStatus.OWED, f"{what} FAILED at PortOne; owed again")
        return _held(cancellation.id, f"{what} {cancellation.status} at PortOne")

    async def _record(
        self, order_id: str, attempts: int, payment: Payment | None, attempt: Attempt
    ) -> None:
        retry_at = None
        if attempt.status == CompensationStatus.OWED:
            retry_at = next_attempt(attempts, utc_now())
        async with self._database.transaction() as db:
            status = await orders_store.end_compensation_attempt(
                db,
                order_id,
                attempt.status,
                cancellation_id=attempt.cancellation_id,
                next_attempt_at=retry_at,
            )
            portone_status = payment.status if payment else None
            entry = HistoryEntry(
                Source.COMPENSATION, portone_status, status, status, attempt.detail
            )
            await orders_store.add_history(db, order_id, entry)
        log = logger.info if attempt.done else logger.warning
        log("compensation of order %s: %s", order_id, attempt.detail)


def _cancel_key(payment: Payment) -> str:
    """The Idempotency-Key of the compensating cancellation PortOne's state now calls for:
    the same while an attempt's answer is lost (PortOne replays it), a new one once PortOne
    has answered a cancellation FAILED (the next attempt is a new intent)."""
    failed = sum(c.status == CancellationStatus.FAILED for c in payment.cancellations)
    return f"compensation-{payment.id}-{failed}"


def _held(cancellation_id: str | None, detail: str) -> Attempt:
    """PortOne holds the cancellation: settled later from the payment, never sent again.

    Without its id there is nothing to settle it by: it stays owed, and the next attempt
    finds it among the payment's cancellations (and holds it) before sending anything.
    """
    if cancellation_id is None:
        return Attempt(CompensationStatus.OWED, f"{detail}, without an id; looked at again")
    return Attempt(CompensationStatus.REQUESTED, detail, cancellation_id)
