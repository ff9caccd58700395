"""Every statement that reads or writes `outbox_events`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import Integer, String, and_, bindparam, exists, func, insert, or_, select, update

from app.db import Query
from app.outbox.event import EventStatus, OutboxEvent
from app.outbox.tables import outbox_events

BATCH = 100

_earlier = outbox_events.alias("earlier")
_blocked = exists().where(
    and_(
        _earlier.c.order_id == outbox_events.c.order_id,
        _earlier.c.seq < outbox_events.c.seq,
        _earlier.c.state != EventStatus.DELIVERED,
    )
)
_by_id = outbox_events.c.id == bindparam("event_id", type_=String)

ADD = Query(
    insert(outbox_events)
    .values(
        id=bindparam("event_id", type_=String),
        order_id=bindparam("order_id", type_=String),
        type=bindparam("type", type_=String),
        payload=bindparam("payload", type_=outbox_events.c.payload.type),
        state=EventStatus.PENDING,
    )
    .inline()
)
# At most one undelivered event per order: the earliest, so events arrive in order.
DUE = Query(
    select(outbox_events)
    .where(
        outbox_events.c.state != EventStatus.DELIVERED,
        outbox_events.c.next_attempt_at <= func.now(),
        ~_blocked,
    )
    .order_by(outbox_events.c.seq)
    .limit(BATCH)
)
RECORD = Query(
    update(outbox_events)
    .where(outbox_events.c.seq == bindparam("event_seq"))
    .values(
        attempts=bindparam("attempts", type_=Integer),
        state=bindparam("state", type_=String),
        last_error=bindparam("last_error", type_=String),
        next_attempt_at=bindparam("next_attempt_at", type_=outbox_events.c.next_attempt_at.type),
        delivered_at=bindparam("delivered_at", type_=outbox_events.c.delivered_at.type),
    )
)
BY_STATE = Query(
    select(outbox_events)
    .where(outbox_events.c.state == bindparam("state", type_=String))
    .order_by(outbox_events.c.seq)
    .limit(bindparam("limit", type_=Integer))
)
OF_ORDER = Query(
    select(outbox_events)
    .where(outbox_events.c.order_id == bindparam("order_id", type_=String))
    .order_by(outbox_events.c.seq)
)
# Every failed event (of one order, or of all) due now; the delivery worker then sends
# each order's in order, its earliest first.
REDELIVER_FAILED = Query(
    update(outbox_events)
    .where(
        outbox_events.c.state == EventStatus.FAILED,
        or_(
            bindparam("order_id", type_=String).is_(None),
            outbox_events.c.order_id == bindparam("order_id", type_=String),
        ),
    )
    .values(state=EventStatus.PENDING, next_attempt_at=func.now())
)
_later = outbox_events.alias("later")
# Orders with a failed event that holds a later one back.
HELD_ORDERS = Query(
    select(func.count(func.distinct(outbox_events.c.order_id))).where(
        outbox_events.c.state == EventStatus.FAILED,
        exists().where(
            _later.c.order_id == outbox_events.c.order_id,
            _later.c.seq > outbox_events.c.seq,
            _later.c.state != EventStatus.DELIVERED,
        ),
    )
)
REDELIVER = Query(
    update(outbox_events)
    .where(_by_id)
    .values(state=EventStatus.PENDING, next_attempt_at=func.now())
    .returning(*outbox_events.c)
)


async def add(
    db: asyncpg.Connection, event_id: str, order_id: str, event_type: str, payload: Any
) -> None:
    await ADD.run(db, event_id=event_id, order_id=order_id, type=event_type, payload=payload)


async def due(db: asyncpg.Connection) -> list[OutboxEvent]:
    return [OutboxEvent.of(record) for record in await DUE.rows(db)]


async def record_attempt(
    db: asyncpg.Connection,
    event: OutboxEvent,
    *,
    error: str | None,
    now: datetime,
    retry_at: datetime | None,
) -> None:
    """The outcome of one more attempt: delivered, or failed (again at `retry_at`, if ever)."""
    await RECORD.run(
        db,
        event_seq=event.seq,
        attempts=event.attempts + 1,
        state=EventStatus.DELIVERED if error is None else EventStatus.FAILED,
        last_error=error,
        next_attempt_at=event.next_attempt_at if error is None else retry_at,
        delivered_at=now if error is None else None,
    )


async def by_state(db: asyncpg.Connection, state: EventStatus, limit: int) -> list[OutboxEvent]:
    return [OutboxEvent.of(r) for r in await BY_STATE.rows(db, state=state, limit=limit)]


async def of_order(db: asyncpg.Connection, order_id: str) -> list[OutboxEvent]:
    return [OutboxEvent.of(r) for r in await OF_ORDER.rows(db, order_id=order_id)]


async def redeliver_failed(db: asyncpg.Connection, order_id: str | None) -> int:
    """How many failed events are due again now."""
    status = await REDELIVER_FAILED.run(db, order_id=order_id)
    return int(status.split()[-1])


async def count_held_orders(db: asyncpg.Connection) -> int:
    return int(await HELD_ORDERS.value(db) or 0)


async def redeliver(db: asyncpg.Connection, event_id: str) -> OutboxEvent | None:
    """Due now, whatever its state."""
    record = await REDELIVER.row(db, event_id=event_id)
    return None if record is None else OutboxEvent.of(record)
