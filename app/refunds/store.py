"""Every statement that reads or writes `refunds`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg
from sqlalchemy import (
    ColumnElement,
    Interval,
    ScalarSelect,
    String,
    bindparam,
    case,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by

from app.db import Query, one_of
from app.orders.tables import orders
from app.refunds.refund import Refund, RefundStatus
from app.refunds.tables import refunds

_by_id = refunds.c.id == bindparam("refund_id", type_=String)
_by_order = refunds.c.order_id == bindparam("order_id", type_=String)
_now = func.now()
_lease = _now + bindparam("lease", type_=Interval)
SETTLED = (RefundStatus.SUCCEEDED, RefundStatus.FAILED)
# Not settled: what PortOne may still take or has taken without saying so yet.
UNSETTLED = (RefundStatus.IN_PROGRESS, RefundStatus.RETRYABLE, RefundStatus.REQUESTED)


def listed(order_id: ColumnElement[str]) -> ScalarSelect[Any]:
    """The refunds of an order as the API lists them, oldest first: a JSON array.

    A refund whose PortOne call has not answered yet is REQUESTED: asked, not settled.
    """
    status = case(
        (one_of(refunds.c.status, SETTLED), refunds.c.status),
        else_=literal(RefundStatus.REQUESTED.value),
    )
    item = func.jsonb_build_object(
        "refundId",
        refunds.c.id,
        "amount",
        refunds.c.amount,
        "reason",
        refunds.c.reason,
        "status",
        status,
        "requestedAt",
        refunds.c.created_at,
        "settledAt",
        refunds.c.settled_at,
    )
    aggregated = func.jsonb_agg(aggregate_order_by(item, refunds.c.created_at, refunds.c.id))
    empty = literal([], type_=JSONB)
    return (
        select(func.coalesce(aggregated, empty))
        .where(refunds.c.order_id == order_id)
        .scalar_subquery()
    )


BY_KEY = Query(
    select(refunds).where(
        _by_order,
        refunds.c.idempotency_key == bindparam("idempotency_key", type_=String),
    )
)
RETRY = Query(
    update(refunds)
    .where(_by_id)
    .values(
        status=RefundStatus.IN_PROGRESS,
        attempts=refunds.c.attempts + 1,
        lease_until=_lease,
        updated_at=_now,
    )
    .returning(*refunds.c)
)
FINISH = Query(
    update(refunds)
    .where(_by_id)
    .values(
        status=bindparam("status", type_=String),
        outcome=bindparam("outcome", type_=String),
        error_code=bindparam("error_code", type_=String),
        cancellation_id=bindparam("cancellation_id", type_=String),
        settled_at=case(
            (one_of(bindparam("settled", type_=String), SETTLED), _now),
            else_=None,
        ),
        lease_until=None,
        updated_at=_now,
    )
    .returning(*refunds.c)
)
# The REQUESTED refunds of an order whose cancellation PortOne has now settled.
SETTLE = Query(
    update(refunds)
    .where(
        _by_order,
        refunds.c.status == RefundStatus.REQUESTED,
        refunds.c.cancellation_id == bindparam("cancellation_id", type_=String),
    )
    .values(
        status=bindparam("status", type_=String),
        outcome=bindparam("outcome", type_=String),
        settled_at=_now,
        updated_at=_now,
    )
    .returning(*refunds.c)
)
# A refund nobody retried: settled unless a retry has taken it meanwhile.
SETTLE_ABANDONED = Query(
    update(refunds)
    .where(
        _by_id,
        one_of(refunds.c.status, [RefundStatus.IN_PROGRESS, RefundStatus.RETRYABLE]),
        (refunds.c.lease_until.is_(None)) | (refunds.c.lease_until < _now),
        refunds.c.updated_at < _now - bindparam("settle_after", type_=Interval),
    )
    .values(
        status=bindparam("status", type_=String),
        outcome=bindparam("outcome", type_=String),
        cancellation_id=bindparam("cancellation_id", type_=String),
        settled_at=case((one_of(bindparam("settled", type_=String), SETTLED), _now), else_=None),
        updated_at=_now,
    )
    .returning(*refunds.c)
)
REQUESTED_AMOUNT = Query(
    select(func.coalesce(func.sum(refunds.c.amount), 0)).where(
        _by_order, refunds.c.status == RefundStatus.REQUESTED
    )
)
CLAIMED_IDS = Query(
    select(refunds.c.cancellation_id).where(
        _by_order,
        refunds.c.id != bindparam("refund_id", type_=String),
        refunds.c.cancellation_id.is_not(None),
    )
)
# Payments with a refund PortOne has not settled, or whose caller vanished: the
# reconciler's to re-read.
# One row per payment, the least recently reconciled first, so a backlog larger than a
# pass is worked through over passes instead of the same payments read each time.
UNSETTLED_PAYMENTS = Query(
    select(orders.c.payment_id)
    .join(refunds, refunds.c.order_id == orders.c.id)
    .where(
        one_of(refunds.c.status, UNSETTLED),
        (refunds.c.status == RefundStatus.REQUESTED)
        | (refunds.c.lease_until.is_(None))
        | (refunds.c.lease_until < _now),
    )
    .group_by(orders.c.payment_id, orders.c.reconciled_at)
    .order_by(orders.c.reconciled_at.asc().nulls_first(), orders.c.payment_id)
    .limit(bindparam("limit", type_=refunds.c.attempts.type))
)
# Refunds whose PortOne call never answered (or whose caller vanished) for long enough.
ABANDONED = Query(
    select(refunds).where(
        _by_order,
        one_of(refunds.c.status, [RefundStatus.IN_PROGRESS, RefundStatus.RETRYABLE]),
        (refunds.c.lease_until.is_(None)) | (refunds.c.lease_until < _now),
        refunds.c.updated_at < _now - bindparam("settle_after", type_=Interval),
    )
)


async def by_key(db: asyncpg.Connection, order_id: str, key: str) -> Refund | None:
    record = await BY_KEY.row(db, order_id=order_id, idempotency_key=key)
    return None if record is None else Refund.of(record)


async def insert_refund(db: asyncpg.Connection, lease: timedelta, **values: Any) -> Refund:
    statement = insert(refunds).values(
        status=RefundStatus.IN_PROGRESS, lease_until=_lease, **values
    )
    record = await Query(statement.returning(*refunds.c)).row(db, lease=lease)
    assert record is not None
    return Refund.of(record)


async def retry(db: asyncpg.Connection, refund: Refund, lease: timedelta) -> Refund:
    """Hold `refund` for one more attempt."""
    record = await RETRY.row(db, refund_id=refund.id, lease=lease)
    assert record is not None
    return Refund.of(record)


async def finish(
    db: asyncpg.Connection,
    refund: Refund,
    status: str,
    outcome: str,
    *,
    error_code: str | None = None,
    cancellation_id: str | None = None,
) -> Refund:
    """The refund as this attempt leaves it: settled when SUCCEEDED or FAILED."""
    record = await FINISH.row(
        db,
        refund_id=refund.id,
        status=status,
        settled=status,
        outcome=outcome,
        error_code=error_code,
        cancellation_id=cancellation_id or refund.cancellation_id,
    )
    assert record is not None
    return Refund.of(record)


async def settle(
    db: asyncpg.Connection, order_id: str, cancellation_id: str, status: str, outcome: str
) -> list[Refund]:
    """The REQUESTED refunds of `cancellation_id`, now `status` (SUCCEEDED or FAILED)."""
    rows = await SETTLE.rows(
        db, order_id=order_id, cancellation_id=cancellation_id, status=status, outcome=outcome
    )
    return [Refund.of(row) for row in rows]


async def settle_abandoned(
    db: asyncpg.Connection,
    refund: Refund,
    status: str,
    outcome: str,
    cancellation_id: str | None,
    settle_after: timedelta,
) -> Refund | None:
    record = await SETTLE_ABANDONED.row(
        db,
        refund_id=refund.id,
        status=status,
        settled=status,
        outcome=outcome,
        cancellation_id=cancellation_id,
        settle_after=settle_after,
    )
    return None if record is None else Refund.of(record)


async def requested_amount(db: asyncpg.Connection, order_id: str) -> int:
    """What the order's refunds PortOne holds REQUESTED amount to."""
    return int(await REQUESTED_AMOUNT.value(db, order_id=order_id))


async def claimed_ids(db: asyncpg.Connection, refund: Refund) -> set[str]:
    """The PortOne cancellations the order's other refunds are known by."""
    rows = await CLAIMED_IDS.rows(db, order_id=refund.order_id, refund_id=refund.id)
    return {row["cancellation_id"] for row in rows}


async def unsettled_payment_ids(db: asyncpg.Connection, limit: int) -> list[str]:
    return [row["payment_id"] for row in await UNSETTLED_PAYMENTS.rows(db, limit=limit)]


async def abandoned(
    db: asyncpg.Connection, order_id: str, settle_after: timedelta
) -> Sequence[Refund]:
    rows = await ABANDONED.rows(db, order_id=order_id, settle_after=settle_after)
    return [Refund.of(row) for row in rows]
