"""Orders as plain rows: what the payment path reads, locks and writes through asyncpg.

The ORM (`app.orders.models`) still owns the schema and the rarer paths; this module is
the hot one, a handful of statements on a `driver_connection` (see there for why).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import driver_connection

# `metadata` is `metadata_` in Python, as on the ORM model (SQLAlchemy reserves the name).
# `version` is the row version's xmin: every UPDATE of the row, by any writer, changes it.
COLUMNS = """id, payment_id, order_name, amount, currency, status, rejection_reason,
    portone_status, status_changed_at, paid_amount, refunded_amount, paid_at,
    va_bank, va_account_number, va_remittee_name, va_expires_at,
    customer, metadata AS metadata_, compensation_status, created_at, updated_at,
    xmin AS version"""

# Composed of constants only (S608 looks for user input formatted into SQL).
FIND = f"SELECT {COLUMNS} FROM orders WHERE payment_id = $1"  # noqa: S608
LOCK = f"SELECT {COLUMNS} FROM orders WHERE payment_id = $1 FOR UPDATE"  # noqa: S608
_SET = """status = $2, rejection_reason = $3, portone_status = $4,
    status_changed_at = $5, paid_amount = $6, refunded_amount = $7, paid_at = $8,
    va_bank = $9, va_account_number = $10, va_remittee_name = $11, va_expires_at = $12,
    compensation_status = $13, updated_at = clock_timestamp()"""
_EVENT = """INSERT INTO order_events
    (order_id, source, portone_status, from_status, to_status, detail)"""
SAVE = f"UPDATE orders SET {_SET} WHERE id = $1 RETURNING updated_at, xmin AS version"  # noqa: S608
ADD_EVENT = f"{_EVENT} VALUES ($1, $2, $3, $4, $5, $6)"
# One statement, so one transaction: the order and its event are written only if the row
# is still at the version read ($14). The UPDATE takes the row lock as FOR UPDATE would
# and, in READ COMMITTED, re-checks the version after waiting out a concurrent writer.
SAVE_IF_UNCHANGED = f"""WITH saved AS (
        UPDATE orders SET {_SET} WHERE id = $1 AND xmin = $14
        RETURNING id, updated_at, xmin AS version),
    event AS ({_EVENT} SELECT id, $15, $16, $17, $18, $19 FROM saved)
    SELECT updated_at, version FROM saved"""  # noqa: S608
# The event of a snapshot that changes nothing, under a share lock on the unchanged row.
RECORD_IF_UNCHANGED = f"""WITH seen AS (SELECT id FROM orders WHERE id = $1 AND xmin = $2 FOR SHARE)
    {_EVENT} SELECT id, $3, $4, $5, $6, $7 FROM seen RETURNING order_id"""  # noqa: S608


@dataclass(frozen=True, slots=True)
class OrderRow:
    id: str
    payment_id: str
    order_name: str
    amount: int
    currency: str
    status: str
    rejection_reason: str | None
    portone_status: str | None
    status_changed_at: datetime | None
    paid_amount: int | None
    refunded_amount: int
    paid_at: datetime | None
    va_bank: str | None
    va_account_number: str | None
    va_remittee_name: str | None
    va_expires_at: datetime | None
    customer: dict[str, Any] | None
    metadata_: dict[str, Any]
    compensation_status: str | None
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, record: asyncpg.Record) -> OrderRow:
        # jsonb arrives decoded: SQLAlchemy sets its codec on every connection of the pool.
        return cls(**record)


async def find_by_payment_id(engine: AsyncEngine, payment_id: str) -> OrderRow | None:
    """The order as it stands, without a lock or a transaction."""
    async with driver_connection(engine) as db:
        record = await db.fetchrow(FIND, payment_id)
    return None if record is None else OrderRow.of(record)


async def lock_by_payment_id(db: asyncpg.Connection, payment_id: str) -> OrderRow | None:
    """The order, locked until the caller's transaction ends."""
    record = await db.fetchrow(LOCK, payment_id)
    return None if record is None else OrderRow.of(record)


@dataclass(frozen=True, slots=True)
class Event:
    """A row of order_events: what one look at a payment did to its order."""

    source: str
    portone_status: str | None
    from_status: str
    to_status: str
    detail: str | None

    def fields(self) -> tuple[str | None, ...]:
        return (self.source, self.portone_status, self.from_status, self.to_status, self.detail)


def _changes(order: OrderRow) -> tuple[Any, ...]:
    """$1-$13 of `_SET`: what the payment path may change."""
    return (
        order.id,
        order.status,
        order.rejection_reason,
        order.portone_status,
        order.status_changed_at,
        order.paid_amount,
        order.refunded_amount,
        order.paid_at,
        order.va_bank,
        order.va_account_number,
        order.va_remittee_name,
        order.va_expires_at,
        order.compensation_status,
    )


async def save(db: asyncpg.Connection, order: OrderRow) -> OrderRow:
    """Write what the payment path may change; the row as stored (new updated_at, version)."""
    record = await db.fetchrow(SAVE, *_changes(order))
    assert record is not None  # the caller holds the row's lock
    return replace(order, **record)


async def save_if_unchanged(
    db: asyncpg.Connection, order: OrderRow, version: int, event: Event
) -> OrderRow | None:
    """`order` and its event, written if the row is still at `version`; else None."""
    record = await db.fetchrow(SAVE_IF_UNCHANGED, *_changes(order), version, *event.fields())
    return None if record is None else replace(order, **record)


async def record_if_unchanged(db: asyncpg.Connection, order: OrderRow, event: Event) -> bool:
    """The event of a snapshot that changed nothing, if the row is still `order`."""
    recorded = await db.fetchval(RECORD_IF_UNCHANGED, order.id, order.version, *event.fields())
    return recorded is not None


async def add_event(db: asyncpg.Connection, order_id: str, event: Event) -> None:
    await db.execute(ADD_EVENT, order_id, *event.fields())
