"""Every statement that reads or writes `refunds`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
from sqlalchemy import Interval, String, bindparam, func, insert, select, update

from app.db import Query, one_of
from app.refunds.refund import Refund, RefundStatus
from app.refunds.tables import refunds

_by_id = refunds.c.id == bindparam("refund_id", type_=String)
_lease = func.now() + bindparam("lease", type_=Interval)

BY_KEY = Query(
    select(refunds).where(
        refunds.c.order_id == bindparam("order_id", type_=String),
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
        updated_at=func.now(),
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
        lease_until=None,
        updated_at=func.now(),
    )
)
# Refunds of the same amount and reason, other than this one, that PortOne took.
CLAIMED_LIKE = Query(
    select(func.count()).where(
        refunds.c.order_id == bindparam("order_id", type_=String),
        refunds.c.id != bindparam("refund_id", type_=String),
        refunds.c.amount == bindparam("amount", type_=refunds.c.amount.type),
        refunds.c.reason == bindparam("reason", type_=String),
        one_of(refunds.c.status, [RefundStatus.SUCCEEDED, RefundStatus.REQUESTED]),
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
    db: asyncpg.Connection, refund: Refund, status: str, outcome: str, error_code: str | None
) -> None:
    await FINISH.run(db, refund_id=refund.id, status=status, outcome=outcome, error_code=error_code)


async def count_claimed_like(db: asyncpg.Connection, refund: Refund) -> int:
    count: int = await CLAIMED_LIKE.value(
        db,
        order_id=refund.order_id,
        refund_id=refund.id,
        amount=refund.amount,
        reason=refund.reason,
    )
    return count
