"""Refunding an order at PortOne without ever refunding twice, and following each refund
until PortOne settles it.

A refund row is reserved under the order's row lock, PortOne is called with no lock
held, and the outcome is recorded. `currentCancellableAmount` is fixed when the row is
reserved, so every retry of one refund sends the same figure and PortOne refuses a
second cancellation; an Idempotency-Key replays the first outcome without a call.
PortOne answers the cancellation SUCCEEDED (200), REQUESTED (202: settled later, see
`app.refunds.settlement`) or FAILED (502 REFUND_FAILED; a new key may try again).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from app.db import Database
from app.errors import (
    IdempotencyKeyReused,
    OrderNotFound,
    OrderNotRefundable,
    RefundConflict,
    RefundExceedsBalance,
    RefundFailed,
    RefundInProgress,
    ServiceError,
)
from app.idempotency import fingerprint
from app.ids import new_id
from app.orders import store as orders_store
from app.orders.order import Order
from app.orders.status import OrderStatus
from app.payments.sync import PaymentSync, Source
from app.portone.client import IDEMPOTENCY_WINDOW, PortOneClient
from app.portone.errors import PortOneApiError, PortOneError
from app.portone.models import CancellationStatus, Payment, PaymentCancellation, RefundAccount
from app.refunds import store
from app.refunds.refund import Refund, RefundStatus
from app.refunds.schemas import RefundRequest
from app.refunds.settlement import Settlement, unclaimed_match
from app.times import utc_now

LEASE = timedelta(seconds=60)
REFUNDABLE = frozenset({OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED})
# PortOne's refusals that mean the payment's balance moved since the order was read, and
# what each tells the caller.
BALANCE_MOVED: dict[str, type[ServiceError]] = {
    "CANCELLABLE_AMOUNT_CONSISTENCY_BROKEN": RefundConflict,
    "PAYMENT_ALREADY_CANCELLED": OrderNotRefundable,
    "CANCEL_AMOUNT_EXCEEDS_CANCELLABLE_AMOUNT": RefundExceedsBalance,
}
REPLAYED_ERRORS: dict[str, type[ServiceError]] = {
    error.code: error for error in (RefundConflict, RefundExceedsBalance, OrderNotRefundable)
}


@dataclass(frozen=True)
class RefundOutcome:
    """The order after a refund, and whether PortOne has settled that refund yet."""

    order: Order
    settled: bool


class Refunds:
    def __init__(
        self,
        database: Database,
        portone: PortOneClient,
        sync: PaymentSync,
        settlement: Settlement,
    ) -> None:
        self._database = database
        self._portone = portone
        self._sync = sync
        self._settlement = settlement

    async def refund(
        self, order_id: str, request: RefundRequest, *, idempotency_key: str | None
    ) -> RefundOutcome:
        refund, payment_id, run = await self._reserve(order_id, request, idempotency_key)
        if run:
            await self._cancel_at_portone(refund, payment_id, request)
        else:
            _replay(refund)
        order = await self._order(order_id)
        listed = next(r for r in order.refunds if r["refundId"] == refund.id)
        return RefundOutcome(order, settled=listed["status"] != RefundStatus.REQUESTED)

    async def _reserve(
        self, order_id: str, request: RefundRequest, key: str | None
    ) -> tuple[Refund, str, bool]:
        """The refund row and whether this request must call PortOne for it."""
        request_hash = fingerprint(request)
        async with self._database.transaction() as db:
            order = await orders_store.lock(db, order_id)
            if order is None:
                raise OrderNotFound(f"no order {order_id}")
            if key is not None:
                earlier = await store.by_key(db, order_id, key)
                if earlier is not None:
                    if earlier.request_hash != request_hash:
                        raise IdempotencyKeyReused(
                            f"Idempotency-Key {key!r} was used with another body"
                        )
                    if retry := _may_retry(earlier):
                        earlier = await store.retry(db, earlier, LEASE)
                    return earlier, order.payment_id, retry
            if order.status not in REFUNDABLE:
                raise OrderNotRefundable(f"order is {order.status}")
            # What PortOne holds REQUESTED is not there to cancel again.
            left = order.amount - order.refunded_amount - await store.requested_amount(db, order_id)
            amount = request.amount or left
            if left <= 0:
                raise RefundExceedsBalance(f"nothing is left to refund of {order.amount}")
            if amount > left:
                raise RefundExceedsBalance(
                    f"refund of {amount} {order.currency} exceeds the {left} {order.currency} left"
                )
            refund = await store.insert_refund(
                db,
                LEASE,
                id=new_id("rfd"),
                order_id=order_id,
                idempotency_key=key,
                request_hash=request_hash,
                amount=amount,
                reason=request.reason,
                cancellable_amount=left,
            )
            return refund, order.payment_id, True

    async def _order(self, order_id: str) -> Order:
        async with self._database.connect() as db:
            order = await orders_store.get(db, order_id)
        assert order is not None  # orders are never deleted
        return order

    async def _cancel_at_portone(
        self, refund: Refund, payment_id: str, request: RefundRequest
    ) -> None:
        account = request.refund_account
        try:
            cancellation = await self._portone.cancel_payment(
                payment_id,
                reason=refund.reason,
                current_cancellable_amount=refund.cancellable_amount,
                # Every attempt of this refund asks for the one cancellation it makes.
                idempotency_key=f"refund-{refund.id}",
                amount=refund.amount,
                refund_account=RefundAccount.model_validate(account.model_dump())
                if account
                else None,
            )
        except PortOneApiError as exc:
            await self._refused(refund, payment_id, exc)
        except PortOneError as exc:
            await self._finish(refund, RefundStatus.RETRYABLE, f"PortOne did not answer: {exc}")
            raise
        else:
            await self._answered(refund, payment_id, cancellation.status, cancellation.id)

    async def _answered(
        self, refund: Refund, payment_id: str, status: str, cancellation_id: str | None
    ) -> None:
        if status == CancellationStatus.FAILED:
            detail = f"PortOne's cancellation {cancellation_id} FAILED"
            await self._finish(refund, RefundStatus.FAILED, detail, RefundFailed, cancellation_id)
            await self._resync(payment_id)
            raise RefundFailed(f"{detail}; a new Idempotency-Key may try again")
        # Anything but SUCCEEDED (REQUESTED, or a status PortOne adds) is not settled yet.
        settled = status == CancellationStatus.SUCCEEDED
        outcome = f"PortOne's cancellation {cancellation_id}: {status}"
        next_status = RefundStatus.SUCCEEDED if settled else RefundStatus.REQUESTED
        await self._finish(refund, next_status, outcome, None, cancellation_id)
        await self._resync(payment_id)

    async def _refused(self, refund: Refund, payment_id: str, exc: PortOneApiError) -> None:
        """PortOne refused: its balance moved (a console cancellation, a concurrent refund,
        or this refund's own earlier attempt whose answer was lost)."""
        payment = await self._resync(payment_id)
        # Within PortOne's window a retry's key would have been answered with the earlier
        # attempt's cancellation: refused, it made none, and matching by amount and reason
        # could only take another refund's.
        retried = exc.type in BALANCE_MOVED and refund.attempts > 1
        past_window = utc_now() - refund.created_at > IDEMPOTENCY_WINDOW
        if (
            retried
            and past_window
            and await self._claim_earlier_attempt(refund, payment_id, payment)
        ):
            return
        error = BALANCE_MOVED.get(exc.type, RefundFailed)
        detail = f"PortOne refused the cancellation ({exc.type}); the order was re-read"
        await self._finish(refund, RefundStatus.FAILED, detail, error)
        raise error(detail)

    async def _resync(self, payment_id: str) -> Payment | None:
        try:
            return (await self._sync.sync(payment_id, Source.REFUND)).payment
        except PortOneError:
            return None  # the webhook or the reconciler brings the order up to date

    async def _claim_earlier_attempt(
        self, refund: Refund, payment_id: str, payment: Payment | None
    ) -> bool:
        """Whether the cancellation an earlier attempt made (its answer lost) is now this
        refund's. The database lets one refund claim a cancellation; a refund that lost the
        race to another looks once more among those left."""
        for _ in range(2):
            earlier = await self._earlier_attempt(refund, payment)
            if earlier is None:
                return False
            try:
                await self._answered(refund, payment_id, earlier.status, earlier.id)
            except asyncpg.UniqueViolationError:
                continue
            return True
        return False

    async def _earlier_attempt(
        self, refund: Refund, payment: Payment | None
    ) -> PaymentCancellation | None:
        """The cancellation an earlier attempt of this refund made, if PortOne holds one of
        its amount and reason that no other refund is known by."""
        if payment is None:
            return None
        async with self._database.connect() as db:
            claimed = await store.claimed_ids(db, refund)
        return unclaimed_match(refund, payment.cancellations, claimed)

    async def _finish(
        self,
        refund: Refund,
        status: RefundStatus,
        outcome: str,
        error: type[ServiceError] | None = None,
        cancellation_id: str | None = None,
    ) -> None:
        async with self._database.transaction() as db:
            # The order first, as every writer of an order and its refunds locks them.
            await orders_store.lock(db, refund.order_id)
            finished = await store.finish(
                db,
                refund,
                status,
                outcome,
                error_code=error.code if error else None,
                cancellation_id=cancellation_id,
            )
            await self._settlement.settled(db, finished)


def _replay(refund: Refund) -> None:
    """A repeated Idempotency-Key: the first answer again, without calling PortOne."""
    if refund.status == RefundStatus.IN_PROGRESS:
        raise RefundInProgress("a request with this Idempotency-Key is still running")
    if refund.status == RefundStatus.FAILED:
        error = REPLAYED_ERRORS.get(refund.error_code or "", RefundFailed)
        raise error(refund.outcome or "the refund failed")


def _may_retry(refund: Refund) -> bool:
    """A refund whose PortOne call never answered, or whose runner vanished past its lease."""
    if refund.status == RefundStatus.RETRYABLE:
        return True
    expired = refund.lease_until is not None and refund.lease_until < utc_now()
    return refund.status == RefundStatus.IN_PROGRESS and expired
