"""The one path: fetch the payment from PortOne, then lock the order, apply, commit.

`/payments/complete`, the webhook and the reconciler all come through `PaymentSync`;
none of them has its own copy of the rules in `app.payments.rules`.

A door that comes with a paymentId (completion, return, webhook) enters through `look`,
which reads the order first: the decision is then made on that row and written only if
the row is still that version (one statement, or one short transaction when order events
go with it); if anything wrote it in between, the ordinary path runs: lock, decide again
on the row as it now stands, write, commit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from app import logs, metrics
from app.db import Database
from app.errors import OrderNotCancellable, OrderNotFound
from app.orders import store as orders_store
from app.orders.order import HistoryEntry, Order
from app.orders.status import WAITING, WITHOUT_MONEY, CompensationStatus, OrderStatus
from app.outbox.writer import Outbox
from app.payments import disputes
from app.payments.rules import Decision, OrderTerms, Policy, decide, settle_compensation
from app.payments.single_flight import SingleFlight
from app.portone.client import PortOneClient
from app.portone.errors import PortOneUnavailable
from app.portone.models import Payment
from app.times import utc_now

logger = logging.getLogger(__name__)

PAID_STATUSES = frozenset({OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED})


class Source(StrEnum):
    """Who looked at the payment: the `source` of an order's history entry."""

    COMPLETE = "complete"
    WEBHOOK = "webhook"
    RECONCILE = "reconcile"
    REFUND = "refund"
    COMPENSATION = "compensation"
    CANCEL = "cancel"  # the shop closed the order


@dataclass(frozen=True)
class Change:
    """What one snapshot does to an order: its new state, the history entry's detail, and
    the order events for the shop."""

    decision: Decision
    order: Order
    detail: str
    events: list[str]
    settles_compensation: bool = False

    def entry(self, source: Source, payment: Payment, before: Order) -> HistoryEntry:
        return HistoryEntry(source, payment.status, before.status, self.order.status, self.detail)


@dataclass(frozen=True)
class Observation:
    """An applied snapshot: the order as committed, and what the snapshot did to it."""

    order: Order
    payment: Payment
    decision: Decision
    from_status: str
    settled: int = 0  # refunds, and a compensation PortOne held, that it settled

    @property
    def changed(self) -> bool:
        return self.order.status != self.from_status


CompensationHook = Callable[[str, Payment | None], Awaitable[object]]
AppliedHook = Callable[[Order, Payment], Awaitable[int]]  # how many refunds it settled


class PaymentSync:
    def __init__(
        self,
        database: Database,
        portone: PortOneClient,
        policy: Policy,
        *,
        auto_cancel: bool,
        on_compensation_owed: CompensationHook | None = None,
        on_applied: AppliedHook | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        """`on_compensation_owed` runs the compensation a rejection owes; `on_applied` is
        told of every applied snapshot (the refunds it may settle)."""
        self._database = database
        self._portone = portone
        self._policy = policy
        self._auto_cancel = auto_cancel
        self._on_compensation_owed = on_compensation_owed
        self._on_applied = on_applied
        self._outbox = outbox
        self._reads = SingleFlight[Observation](_without_money)

    async def find(self, payment_id: str) -> Order | None:
        """The order as it stands, without a lock or a transaction."""
        async with self._database.connect() as db:
            return await orders_store.find_by_payment_id(db, payment_id)

    async def order_of(self, payment_id: str) -> Order:
        """The order as it stands; `OrderNotFound` when no order has this paymentId."""
        order = await self.find(payment_id)
        if order is None:
            raise OrderNotFound(f"no order has paymentId {payment_id}")
        return order

    async def look(
        self, payment_id: str, source: Source, *, public: bool = False, tx_id: str | None = None
    ) -> tuple[Order, Observation | None]:
        """A door's way in: the order with this paymentId (`OrderNotFound` when none; no
        PortOne call), then PortOne's payment applied to it, unless the door is `public`
        and the order holds money already (those change through webhooks and the
        reconciler, never through the doors anyone can knock on). Raises PortOne's
        errors, including `PaymentNotFound`."""
        order = await self.order_of(payment_id)
        if public and order.status not in WITHOUT_MONEY:
            return order, None
        observation = await self.sync(payment_id, source, seen=order, tx_id=tx_id)
        return observation.order, observation

    async def sync(
        self,
        payment_id: str,
        source: Source,
        seen: Order | None = None,
        *,
        fresh: bool = False,
        tx_id: str | None = None,
    ) -> Observation:
        """Fetch PortOne's truth (no transaction open), then apply it (to `seen`, if given:
        the order as the caller just read it).

        A completion shares a read in flight for the same payment, or reuses a recent one
        that left the order without money (`app.payments.single_flight`), unless `fresh`,
        or unless it shows another attempt than the browser's `tx_id` (a customer who paid
        again a moment after a failed attempt); every other source reads afresh, and its
        outcome is what completions reuse next.
        """

        async def read_and_apply() -> Observation:
            payment = await self._portone.get_payment(payment_id)
            return await self.apply(payment_id, payment, source, seen)

        def answers(observation: Observation) -> bool:
            shown = observation.payment.transaction_id
            return shown is None or shown == tx_id

        if source == Source.COMPLETE and not fresh:
            check = answers if tx_id is not None else None
            return await self._reads.shared(payment_id, read_and_apply, answers=check)
        return await self._reads.fresh(payment_id, read_and_apply)

    async def apply_read(self, payment_id: str, payment: Payment, source: Source) -> Observation:
        """Apply a payment read afresh elsewhere (PortOne's list of changed payments); what
        completions reuse next."""
        return await self._reads.fresh(payment_id, lambda: self.apply(payment_id, payment, source))

    async def apply(
        self, payment_id: str, payment: Payment, source: Source, seen: Order | None = None
    ) -> Observation:
        logs.bind(payment_id=payment_id)
        if payment.id != payment_id:
            # Never act on an answer about another payment: that would cancel someone else's.
            raise PortOneUnavailable(f"PortOne answered for payment {payment.id!r}")
        observation = None
        if seen is not None and seen.payment_id == payment_id:
            observation = await self._apply_if_unchanged(seen, payment, source)
        if observation is None:
            observation = await self._apply_locked(payment_id, payment, source)
        _count(observation)
        # Only the transaction that rejected the payment owes its compensation.
        order, decision = observation.order, observation.decision
        owed = (
            decision.rejection is not None and order.compensation_status == CompensationStatus.OWED
        )
        if owed and self._on_compensation_owed is not None:
            await self._on_compensation_owed(order.id, payment)
        if self._on_applied is not None and not decision.stale:
            settled = await self._on_applied(order, payment)
            observation = replace(observation, settled=observation.settled + settled)
        return observation

    async def close(self, order_id: str, source: Source, why: str) -> Order:
        """Close an order that has taken no money: CANCELLED, with `order.cancelled` for the
        shop; a virtual account already issued for it is then closed at PortOne, owed
        until PortOne shows it closed (like a compensation). An order already CANCELLED is
        returned as it is; one that took money raises `OrderNotCancellable`. A payment
        that still arrives for it is rejected (`ORDER_CLOSED`) by the rules."""
        async with self._database.transaction() as db:
            before = await orders_store.lock(db, order_id)
            if before is None:
                raise OrderNotFound(f"no order {order_id}")
            if before.status == OrderStatus.CANCELLED:
                return before
            if before.status not in WAITING:
                raise OrderNotCancellable(f"order is {before.status}: refund it instead")
            logs.bind(order_id=order_id)
            account_issued = before.status == OrderStatus.AWAITING_DEPOSIT
            changes: dict[str, Any] = {"status": OrderStatus.CANCELLED}
            if account_issued:
                changes |= {
                    "compensation_status": CompensationStatus.OWED,
                    "compensation_next_attempt_at": None,
                }
            order = await orders_store.save(db, replace(before, **changes))
            if self._outbox is not None:
                await self._outbox.add(db, order)
            entry = HistoryEntry(source, before.portone_status, before.status, order.status, why)
            await orders_store.add_history(db, order_id, entry)
        logger.info("order %s: %s -> CANCELLED (%s)", order_id, before.status, why)
        if account_issued and self._on_compensation_owed is not None:
            await self._on_compensation_owed(order_id, None)
        return order

    async def _apply_if_unchanged(
        self, seen: Order, payment: Payment, source: Source
    ) -> Observation | None:
        """Decide on the order as read, and write only if it is still that row version:
        one statement instead of BEGIN, lock, update, history, COMMIT. None when another
        writer came first; the locked path then decides again."""
        logs.bind(order_id=seen.id)
        change = self._decided(seen, payment)
        entry = change.entry(source, payment, seen)
        outbox = self._outbox if change.events else None
        async with (
            self._database.connect() as db,
            # The outbox rows need the stored updated_at, so they take more statements.
            db.transaction() if outbox is not None else nullcontext(),
        ):
            if change.order == seen:
                saved = seen if await orders_store.record_if_unchanged(db, seen, entry) else None
            else:
                saved = await orders_store.save_if_unchanged(db, change.order, seen.version, entry)
            if saved is None:
                return None
            if outbox is not None:
                for event_type in change.events:
                    await outbox.add(db, saved, event_type)
        return Observation(
            saved, payment, change.decision, seen.status, int(change.settles_compensation)
        )

    async def _apply_locked(self, payment_id: str, payment: Payment, source: Source) -> Observation:
        async with self._database.transaction() as db:
            before = await orders_store.lock_by_payment_id(db, payment_id)
            if before is None:
                raise OrderNotFound(f"no order has paymentId {payment_id}")
            logs.bind(order_id=before.id)
            change = self._decided(before, payment)
            order = change.order
            if order != before:
                order = await orders_store.save(db, order)
            if self._outbox is not None:
                for event_type in change.events:
                    await self._outbox.add(db, order, event_type)
            await orders_store.add_history(db, order.id, change.entry(source, payment, before))
        return Observation(
            order, payment, change.decision, before.status, int(change.settles_compensation)
        )

    def _decided(self, before: Order, payment: Payment) -> Change:
        decision = decide(payment, _terms(before), self._policy)
        if decision.stale:
            return Change(decision, before, decision.detail, [])
        order = self._applied(before, payment, decision)
        notes, events = [decision.detail], []
        if order.status != before.status:
            events.append(f"order.{order.status.lower()}")
        settled = settle_compensation(
            order.compensation_status, order.compensation_cancellation_id, payment
        )
        if settled is not None:
            compensation, note = settled
            order = replace(order, compensation_status=compensation)
            notes.append(f"compensation {compensation}: {note}")
        if disputed := disputes.changes(before.disputes, order.disputes):
            events += disputed
            notes.append(disputes.describe(disputed, order.disputes))
        return Change(decision, order, "; ".join(notes), events, settled is not None)

    def _applied(self, order: Order, payment: Payment, decision: Decision) -> Order:
        """The order as the decision leaves it (written only if anything differs)."""
        changes: dict[str, Any] = {
            "status": decision.to_status,
            "portone_status": payment.status,
            "status_changed_at": payment.status_changed_at or order.status_changed_at,
            "portone_updated_at": payment.updated_at or order.portone_updated_at,
            "refunded_amount": payment.amount.cancelled,
        }
        if payment.disputes or order.disputes:
            changes["disputes"] = disputes.mirrored(payment)
        if decision.rejection is not None:
            changes["rejection_reason"] = decision.rejection
            changes["compensation_status"] = (
                CompensationStatus.OWED if self._auto_cancel else CompensationStatus.DISABLED
            )
            return replace(order, **changes)
        if decision.to_status in PAID_STATUSES:
            changes["paid_at"] = payment.paid_at or order.paid_at
            changes["paid_amount"] = payment.amount.paid
        method = payment.method
        if method is not None and method.is_virtual_account and method.account_number:
            changes["va_bank"] = method.bank
            changes["va_account_number"] = method.account_number
            changes["va_remittee_name"] = method.remittee_name
            changes["va_expires_at"] = method.expired_at
        return replace(order, **changes)


def _without_money(observation: Observation) -> bool:
    """Whether the order still holds no money after this snapshot (a read worth reusing)."""
    return observation.order.status in WITHOUT_MONEY


def _terms(order: Order) -> OrderTerms:
    return OrderTerms(
        order.amount,
        order.currency,
        order.status,
        order.status_changed_at,
        order.portone_updated_at,
        closed=is_closed(order),
    )


def is_closed(order: Order) -> bool:
    """Whether the order takes no more money: cancelled, or past its expiry (whether or
    not the reconciler has closed it yet)."""
    if order.status == OrderStatus.CANCELLED:
        return True
    return order.expires_at is not None and utc_now() >= order.expires_at


def _count(observation: Observation) -> None:
    decision = observation.decision
    if decision.stale:
        outcome = "stale"
    elif observation.changed:
        outcome = observation.order.status.lower()
    else:
        outcome = "unchanged"
    metrics.verifications.labels(outcome, decision.rejection or "").inc()
    if observation.changed:
        logger.info(
            "order %s: %s -> %s",
            observation.order.id,
            observation.from_status,
            observation.order.status,
            extra={"portone_status": observation.payment.status, "detail": decision.detail},
        )
