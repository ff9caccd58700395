"""Every statement of the payment path's own bookkeeping: PortOne's webhook deliveries
(`webhook_deliveries`), the reconciler's place in PortOne's list of changed payments
(`reconciler_checkpoints`), and the reconciler's view of the orders it re-reads (which it
marks with `reconciled_at`, its own column, never a change of the order).

Built once from the table definitions (`app.payments.tables`, `app.orders.tables`);
functions take the asyncpg connection of the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import asyncpg
from sqlalchemy import (
    ARRAY,
    Integer,
    Interval,
    String,
    and_,
    any_,
    bindparam,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert

from app.db import Query, one_of
from app.orders.status import WAITING, OrderStatus
from app.orders.tables import orders
from app.payments.tables import reconciler_checkpoints as checkpoints
from app.payments.tables import webhook_deliveries as deliveries

# -- webhook deliveries -------------------------------------------------------------------


class WebhookStatus(StrEnum):
    PROCESSING = "PROCESSING"
    PROCESSED = "PROCESSED"
    IGNORED = "IGNORED"
    INVALID = "INVALID"
    FAILED = "FAILED"


_now = func.now()
_lease = _now + bindparam("lease", type_=Interval)
_by_webhook_id = deliveries.c.webhook_id == bindparam("webhook_id", type_=String)
_abandoned = or_(
    deliveries.c.status == WebhookStatus.FAILED,
    (deliveries.c.status == WebhookStatus.PROCESSING) & (deliveries.c.lease_until < _now),
)

_claim = insert(deliveries).values(
    webhook_id=bindparam("webhook_id", type_=String),
    body=bindparam("body", type_=String),
    type=bindparam("type", type_=String),
    payment_id=bindparam("payment_id", type_=String),
    status=WebhookStatus.PROCESSING,
    lease_until=_lease,
)
CLAIM = Query(
    _claim.on_conflict_do_update(
        index_elements=[deliveries.c.webhook_id],
        set_={
            "status": WebhookStatus.PROCESSING,
            "lease_until": _lease,
            "attempts": deliveries.c.attempts + 1,
        },
        where=_abandoned,
    ).returning(deliveries.c.id)
)
STORE_INVALID = Query(
    insert(deliveries)
    .values(
        webhook_id=bindparam("webhook_id", type_=String),
        body=bindparam("body", type_=String),
        status=WebhookStatus.INVALID,
        outcome=bindparam("outcome", type_=String),
        processed_at=_now,
    )
    .on_conflict_do_nothing(index_elements=[deliveries.c.webhook_id])
)
FINISH = Query(
    update(deliveries)
    .where(_by_webhook_id)
    .values(
        status=bindparam("status", type_=String),
        outcome=bindparam("outcome", type_=String),
        processed_at=_now,
        lease_until=None,
    )
)


def _ended(status: WebhookStatus, outcome: str) -> dict[str, Any]:
    """A delivery the reconciler closes: its status and why, now, with no lease."""
    return {"status": status, "outcome": outcome, "processed_at": _now, "lease_until": None}


# A failed or abandoned delivery whose payment the reconciler has just re-read.
RESOLVE = Query(
    update(deliveries)
    .where(
        deliveries.c.payment_id == bindparam("payment_id", type_=String),
        one_of(deliveries.c.status, [WebhookStatus.FAILED, WebhookStatus.PROCESSING]),
        or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < _now),
    )
    .values(_ended(WebhookStatus.PROCESSED, "applied by the reconciler"))
)
# A failed or abandoned delivery for a payment no order has: nothing to apply, ever, and
# settled without asking PortOne.
IGNORE_ORPHANS = Query(
    update(deliveries)
    .where(
        deliveries.c.payment_id.is_not(None),
        _abandoned,
        ~exists().where(orders.c.payment_id == deliveries.c.payment_id),
    )
    .values(_ended(WebhookStatus.IGNORED, "no order has this paymentId"))
)
# One row per payment, its order's least recently reconciled first: a payment that keeps
# failing goes to the back of the list after each pass instead of holding its head.
UNPROCESSED = Query(
    select(deliveries.c.payment_id)
    .join(orders, orders.c.payment_id == deliveries.c.payment_id)
    .where(_abandoned)
    .group_by(deliveries.c.payment_id)
    .order_by(
        func.max(orders.c.reconciled_at).asc().nulls_first(), func.min(deliveries.c.received_at)
    )
    .limit(bindparam("limit", type_=Integer))
)
OLDEST_UNPROCESSED = Query(
    select(func.extract("epoch", _now - func.min(deliveries.c.received_at))).where(
        one_of(deliveries.c.status, [WebhookStatus.PROCESSING, WebhookStatus.FAILED])
    )
)


async def claim(
    db: asyncpg.Connection,
    *,
    webhook_id: str,
    body: str,
    event_type: str,
    payment_id: str | None,
    lease: timedelta,
) -> bool:
    """Whether this request holds the delivery now: it inserted it, or found it FAILED or
    abandoned past its lease (and took it, with a new lease)."""
    claimed = await CLAIM.value(
        db, webhook_id=webhook_id, body=body, type=event_type, payment_id=payment_id, lease=lease
    )
    return claimed is not None


async def store_invalid(
    db: asyncpg.Connection, *, webhook_id: str, body: str, outcome: str
) -> None:
    """A signed delivery that is not a webhook we can read, kept for people to look at."""
    await STORE_INVALID.run(db, webhook_id=webhook_id, body=body, outcome=outcome)


async def finish(
    db: asyncpg.Connection, *, webhook_id: str, status: WebhookStatus, outcome: str
) -> None:
    await FINISH.run(db, webhook_id=webhook_id, status=status, outcome=outcome[:2000])


async def resolve_deliveries(db: asyncpg.Connection, payment_id: str) -> None:
    """A failed webhook whose payment has just been re-fetched has served its purpose."""
    await RESOLVE.run(db, payment_id=payment_id)


async def ignore_orphan_deliveries(db: asyncpg.Connection) -> None:
    """Failed webhooks of payments no order has are settled as ignored."""
    await IGNORE_ORPHANS.run(db)


async def unprocessed_payment_ids(db: asyncpg.Connection, limit: int) -> list[str]:
    """Payments whose webhook failed, or whose handler vanished past its lease; those the
    reconciler looked at least recently first."""
    return [row["payment_id"] for row in await UNPROCESSED.rows(db, limit=limit)]


async def oldest_unprocessed_age(db: asyncpg.Connection) -> float:
    """Seconds the oldest stored webhook has waited (0 when none)."""
    return float(await OLDEST_UNPROCESSED.value(db) or 0)


# -- the reconciler's checkpoint -----------------------------------------------------------

_by_name = checkpoints.c.name == bindparam("name", type_=String)
READ_CHECKPOINT = Query(select(checkpoints).where(_by_name))
_saved = {
    column.key: bindparam(column.key, type_=column.type)
    for column in (
        checkpoints.c.changed_until,
        checkpoints.c.resume_from,
        checkpoints.c.window_until,
        checkpoints.c.resume_page,
    )
}
SAVE_CHECKPOINT = Query(
    insert(checkpoints)
    .values(name=bindparam("name", type_=String), **_saved)
    .on_conflict_do_update(index_elements=[checkpoints.c.name], set_=_saved)
)


async def read_checkpoint(db: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    return await READ_CHECKPOINT.row(db, name=name)


async def save_checkpoint(db: asyncpg.Connection, name: str, **position: Any) -> None:
    await SAVE_CHECKPOINT.run(db, name=name, **position)


# -- the reconciler's view --------------------------------------------------------------

_now = func.now()
# Spaced looks: the wait since the last look is the order's age at that look, so looks
# come about 1, 2, 4, 8 … minutes after its creation, at most `longest_wait` apart.
_last_look = orders.c.reconciled_at
_wait = func.least(
    func.greatest(_last_look - orders.c.created_at, bindparam("first_wait", type_=Interval)),
    bindparam("longest_wait", type_=Interval),
)
_due = or_(_last_look.is_(None), _last_look <= _now - _wait)
WAITING_ORDERS = Query(
    select(orders.c.payment_id)
    .where(
        or_(
            and_(
                orders.c.status == OrderStatus.PENDING,
                orders.c.created_at < _now - bindparam("pending_min_age", type_=Interval),
                orders.c.created_at > _now - bindparam("pending_max_age", type_=Interval),
            ),
            orders.c.status == OrderStatus.AWAITING_DEPOSIT,
        ),
        _due,
    )
    .order_by(orders.c.reconciled_at.asc().nulls_first(), orders.c.created_at)
    .limit(bindparam("limit", type_=Integer))
)
EXPIRED = Query(
    select(orders.c.id)
    .where(one_of(orders.c.status, WAITING), orders.c.expires_at <= _now)
    .order_by(orders.c.expires_at)
    .limit(bindparam("limit", type_=Integer))
)
MARK_RECONCILED = Query(
    update(orders)
    .where(orders.c.payment_id == any_(bindparam("payment_ids", type_=ARRAY(String))))
    .values(reconciled_at=_now)
)
APPLIED = Query(
    select(orders.c.payment_id, orders.c.portone_status, orders.c.status_changed_at).where(
        orders.c.payment_id == any_(bindparam("payment_ids", type_=ARRAY(String)))
    )
)


async def waiting_payment_ids(
    db: asyncpg.Connection,
    *,
    pending_min_age: timedelta,
    pending_max_age: timedelta,
    first_wait: timedelta,
    longest_wait: timedelta,
    limit: int,
) -> list[str]:
    """Orders due for another look, least recently looked at first: PENDING within the age
    window, and AWAITING_DEPOSIT (whose deposit comes by webhook), each at growing waits
    (`first_wait`, doubling with the order's age) up to `longest_wait` apart."""
    rows = await WAITING_ORDERS.rows(
        db,
        pending_min_age=pending_min_age,
        pending_max_age=pending_max_age,
        first_wait=first_wait,
        longest_wait=longest_wait,
        limit=limit,
    )
    return [row["payment_id"] for row in rows]


async def expired_order_ids(db: asyncpg.Connection, limit: int) -> list[str]:
    """Orders still open past their expiry, the longest expired first."""
    return [row["id"] for row in await EXPIRED.rows(db, limit=limit)]


async def mark_reconciled(db: asyncpg.Connection, payment_ids: Sequence[str]) -> None:
    """The reconciler has just looked at these (its own mark: not a change of the order)."""
    await MARK_RECONCILED.run(db, payment_ids=list(payment_ids))


async def applied_snapshots(
    db: asyncpg.Connection, payment_ids: Sequence[str]
) -> dict[str, tuple[str | None, datetime | None]]:
    """For the orders among `payment_ids`: the PortOne status and time last applied."""
    rows = await APPLIED.rows(db, payment_ids=list(payment_ids))
    return {row["payment_id"]: (row["portone_status"], row["status_changed_at"]) for row in rows}
