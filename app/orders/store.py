"""The statements of an order's own life: created, read, found by its paymentId, locked,
saved with its history, and its compensation's bookkeeping (`orders`, `order_history`).
The reconciler's view of orders is `app.payments.store`'s; refunds read with their order
are `app.refunds.store`'s.

Built once from the table definitions (`app.orders.tables`); the hot ones are compiled
at import. Functions take the asyncpg connection of the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import (
    ColumnElement,
    Integer,
    Interval,
    String,
    bindparam,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql import column, table

from app.db import Query, one_of
from app.orders.order import HistoryEntry, Order
from app.orders.status import CompensationStatus, OrderStatus
from app.orders.tables import order_history, orders
from app.refunds import store as refunds_store

# The columns as `Order`'s fields (the row version is `xmin` in SQL), and its refunds.
ORDER = [
    *(c if c.key == c.name else c.label(c.key) for c in orders.c),
    refunds_store.listed(orders.c.id).label("refunds"),
]
# What the payment path decides: the rest of an order is fixed at its creation.
PAYMENT_STATE = (
    orders.c.status,
    orders.c.rejection_reason,
    orders.c.portone_status,
    orders.c.status_changed_at,
    orders.c.portone_updated_at,
    orders.c.paid_amount,
    orders.c.refunded_amount,
    orders.c.paid_at,
    orders.c.va_bank,
    orders.c.va_account_number,
    orders.c.va_remittee_name,
    orders.c.va_expires_at,
    orders.c.disputes,
    orders.c.compensation_status,
    orders.c.compensation_cancellation_id,
    orders.c.compensation_next_attempt_at,
)
ENTRY = (
    order_history.c.source,
    order_history.c.portone_status,
    order_history.c.from_status,
    order_history.c.to_status,
    order_history.c.detail,
)


def _binds(columns: Sequence[Any], prefix: str = "") -> dict[str, Any]:
    return {c.key: bindparam(prefix + c.key, type_=c.type) for c in columns}


def _by_payment_id() -> ColumnElement[bool]:
    return orders.c.payment_id == bindparam("payment_id")


def _by_id() -> ColumnElement[bool]:
    return orders.c.id == bindparam("order_id", type_=String)


def _entry_from(source: Any) -> Any:
    """INSERT INTO order_history … SELECT <the order's id from `source`>, <the entry>."""
    values = select(source.c.id, *_binds(ENTRY, "entry_").values())
    return insert(order_history).from_select(["order_id", *(c.key for c in ENTRY)], values)


_state = _binds(PAYMENT_STATE) | {"updated_at": func.clock_timestamp()}
_saved = (
    update(orders)
    .where(_by_id(), orders.c.version == bindparam("seen"))
    .values(_state)
    .returning(orders.c.id, orders.c.updated_at, orders.c.version)
    .cte("saved")
)
_seen = (
    select(orders.c.id)
    .where(_by_id(), orders.c.version == bindparam("seen"))
    .with_for_update(read=True)
    .cte("seen")
)

FIND = Query(select(*ORDER).where(_by_payment_id()))
LOCK = Query(select(*ORDER).where(_by_payment_id()).with_for_update())
SAVE = Query(
    update(orders)
    .where(_by_id())
    .values(_state)
    .returning(orders.c.updated_at, orders.c.version.label("version"))
)
# One statement, so one transaction: the order and its history entry are written only if
# the row is still the version read. The UPDATE takes the row lock as FOR UPDATE would
# and, in READ COMMITTED, checks the version again after waiting out a concurrent writer.
SAVE_IF_UNCHANGED = Query(
    select(_saved.c.updated_at, _saved.c.version.label("version")).add_cte(
        _entry_from(_saved).cte("entry")
    )
)
# The entry of a snapshot that changes nothing, under a share lock on the unchanged row.
RECORD_IF_UNCHANGED = Query(_entry_from(_seen).returning(order_history.c.order_id).add_cte(_seen))
ADD_HISTORY = Query(
    insert(order_history)
    .values(order_id=bindparam("order_id", type_=String), **_binds(ENTRY, "entry_"))
    .inline()
)


def _state_of(order: Order) -> dict[str, Any]:
    return {c.key: getattr(order, c.key) for c in PAYMENT_STATE}


def _entry_of(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "entry_source": entry.source,
        "entry_portone_status": entry.portone_status,
        "entry_from_status": entry.from_status,
        "entry_to_status": entry.to_status,
        "entry_detail": entry.detail,
    }


async def _order(query: Query, db: asyncpg.Connection, **params: Any) -> Order | None:
    record = await query.row(db, **params)
    return None if record is None else Order.of(record)


async def find_by_payment_id(db: asyncpg.Connection, payment_id: str) -> Order | None:
    return await _order(FIND, db, payment_id=payment_id)


async def lock_by_payment_id(db: asyncpg.Connection, payment_id: str) -> Order | None:
    """The order, locked until the caller's transaction ends."""
    return await _order(LOCK, db, payment_id=payment_id)


async def save(db: asyncpg.Connection, order: Order) -> Order:
    """Write the payment state of a locked order; the order as stored."""
    record = await SAVE.row(db, order_id=order.id, **_state_of(order))
    assert record is not None  # the caller holds the row's lock
    return replace(order, **record)


async def save_if_unchanged(
    db: asyncpg.Connection, order: Order, version: int, entry: HistoryEntry
) -> Order | None:
    """`order` and its history entry, written if the row is still at `version`; else None."""
    record = await SAVE_IF_UNCHANGED.row(
        db, order_id=order.id, seen=version, **_state_of(order), **_entry_of(entry)
    )
    return None if record is None else replace(order, **record)


async def record_if_unchanged(db: asyncpg.Connection, order: Order, entry: HistoryEntry) -> bool:
    """The history entry of a snapshot that changed nothing, if the row is still `order`."""
    recorded = await RECORD_IF_UNCHANGED.value(
        db, order_id=order.id, seen=order.version, **_entry_of(entry)
    )
    return recorded is not None


async def add_history(db: asyncpg.Connection, order_id: str, entry: HistoryEntry) -> None:
    await ADD_HISTORY.run(db, order_id=order_id, **_entry_of(entry))


# -- creating and reading -------------------------------------------------------------

GET = Query(select(*ORDER).where(_by_id()))
LOCK_BY_ID = Query(select(*ORDER).where(_by_id()).with_for_update())
BY_IDEMPOTENCY_KEY = Query(
    select(*ORDER).where(orders.c.idempotency_key == bindparam("idempotency_key"))
)
HISTORY = Query(
    select(order_history)
    .where(order_history.c.order_id == bindparam("order_id", type_=String))
    .order_by(order_history.c.id)
)


async def insert_order(db: asyncpg.Connection, **values: Any) -> Order | None:
    """The new order; None when its idempotency key is already taken."""
    statement = (
        pg_insert(orders)
        .values(status=OrderStatus.PENDING, **values)
        .on_conflict_do_nothing(index_elements=[orders.c.idempotency_key])
        .returning(*ORDER)
    )
    return await _order(Query(statement), db)


async def get(db: asyncpg.Connection, order_id: str) -> Order | None:
    return await _order(GET, db, order_id=order_id)


async def lock(db: asyncpg.Connection, order_id: str) -> Order | None:
    return await _order(LOCK_BY_ID, db, order_id=order_id)


async def by_idempotency_key(db: asyncpg.Connection, key: str) -> Order | None:
    return await _order(BY_IDEMPOTENCY_KEY, db, idempotency_key=key)


async def history(db: asyncpg.Connection, order_id: str) -> list[asyncpg.Record]:
    return await HISTORY.rows(db, order_id=order_id)


async def changed(
    db: asyncpg.Connection,
    *,
    statuses: Sequence[str],
    updated_after: datetime | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Order]:
    """Orders by (updated_at, id), up to the oldest write still in flight.

    A transaction that has written but not committed may yet commit rows older than
    ones already visible; stopping short of it means a client paging on never misses
    them (they come on a later page).
    """
    query = select(*ORDER).where(orders.c.updated_at < _write_horizon())
    if statuses:
        query = query.where(orders.c.status.in_(statuses))
    if updated_after is not None:
        query = query.where(orders.c.updated_at > updated_after)
    if after is not None:
        query = query.where(tuple_(orders.c.updated_at, orders.c.id) > tuple_(*after))
    query = query.order_by(orders.c.updated_at, orders.c.id).limit(limit)
    return [Order.of(record) for record in await Query(query).rows(db)]


_activity = table(
    "pg_stat_activity",
    column("xact_start"),
    column("datname"),
    column("backend_xid"),
    column("pid"),
)


def _write_horizon() -> ColumnElement[datetime]:
    in_flight = (
        select(func.min(_activity.c.xact_start))
        .where(
            _activity.c.datname == func.current_database(),
            _activity.c.backend_xid.is_not(None),
            _activity.c.pid != func.pg_backend_pid(),
        )
        .scalar_subquery()
    )
    return func.least(func.coalesce(in_flight, func.clock_timestamp()), func.clock_timestamp())


# -- compensation -----------------------------------------------------------------------

_now = func.now()
_lease_free = or_(
    orders.c.compensation_lease_until.is_(None), orders.c.compensation_lease_until < _now
)
DUE_COMPENSATIONS = Query(
    select(orders.c.id)
    .where(
        orders.c.compensation_status == CompensationStatus.OWED,
        _lease_free,
        or_(
            orders.c.compensation_next_attempt_at.is_(None),
            orders.c.compensation_next_attempt_at <= _now,
        ),
    )
    .order_by(orders.c.compensation_next_attempt_at.asc().nulls_first())
    .limit(bindparam("limit", type_=Integer))
)
COUNT_OWED = Query(
    select(func.count()).where(
        one_of(
            orders.c.compensation_status, [CompensationStatus.OWED, CompensationStatus.REQUESTED]
        )
    )
)
HELD_COMPENSATIONS = Query(
    select(orders.c.payment_id)
    .where(orders.c.compensation_status == CompensationStatus.REQUESTED)
    .order_by(orders.c.reconciled_at.asc().nulls_first())
    .limit(bindparam("limit", type_=Integer))
)
CLAIM_COMPENSATION = Query(
    update(orders)
    .where(_by_id(), orders.c.compensation_status == CompensationStatus.OWED, _lease_free)
    .values(
        compensation_lease_until=_now + bindparam("lease", type_=Interval),
        compensation_attempts=orders.c.compensation_attempts + 1,
    )
    .returning(orders.c.payment_id, orders.c.rejection_reason, orders.c.compensation_attempts)
)
END_COMPENSATION = Query(
    update(orders)
    .where(_by_id())
    .values(
        compensation_lease_until=None,
        compensation_status=bindparam("compensation_status", type_=String),
        compensation_cancellation_id=bindparam("cancellation_id", type_=String),
        compensation_next_attempt_at=bindparam(
            "next_attempt_at", type_=orders.c.compensation_next_attempt_at.type
        ),
    )
    .returning(orders.c.status)
)


@dataclass(frozen=True)
class ClaimedCompensation:
    payment_id: str
    reason: str
    attempts: int  # this one included


async def due_compensations(db: asyncpg.Connection, limit: int) -> list[str]:
    """Owed compensations due now, the longest due first."""
    return [row["id"] for row in await DUE_COMPENSATIONS.rows(db, limit=limit)]


async def count_owed_compensations(db: asyncpg.Connection) -> int:
    """Compensations PortOne has not shown done: owed, or held REQUESTED."""
    count: int = await COUNT_OWED.value(db)
    return count


async def held_compensation_payment_ids(db: asyncpg.Connection, limit: int) -> list[str]:
    """Payments whose compensation PortOne holds REQUESTED, least recently looked at first."""
    return [row["payment_id"] for row in await HELD_COMPENSATIONS.rows(db, limit=limit)]


async def claim_compensation(
    db: asyncpg.Connection, order_id: str, lease: timedelta
) -> ClaimedCompensation | None:
    """An owed compensation nobody else holds, leased to the caller."""
    row = await CLAIM_COMPENSATION.row(db, order_id=order_id, lease=lease)
    if row is None:
        return None
    return ClaimedCompensation(
        # Owed without a rejection: the order was closed with a virtual account issued.
        row["payment_id"],
        row["rejection_reason"] or "ORDER_CLOSED",
        row["compensation_attempts"],
    )


async def end_compensation_attempt(
    db: asyncpg.Connection,
    order_id: str,
    compensation_status: str,
    *,
    cancellation_id: str | None,
    next_attempt_at: datetime | None,
) -> str:
    """Release the lease with the attempt's outcome; the order's status."""
    status: str = await END_COMPENSATION.value(
        db,
        order_id=order_id,
        compensation_status=compensation_status,
        cancellation_id=cancellation_id,
        next_attempt_at=next_attempt_at,
    )
    return status
