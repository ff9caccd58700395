"""Creating and reading orders."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, func, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert

from app.db import Sessions
from app.errors import IdempotencyKeyReused, OrderNotFound
from app.idempotency import fingerprint
from app.ids import new_id
from app.orders.models import Order, OrderEvent
from app.orders.schemas import OrderCreate
from app.portone.client import PortOneClient
from app.portone.errors import PortOneApiError, PortOneUnavailable


async def create_order(
    sessions: Sessions,
    data: OrderCreate,
    *,
    idempotency_key: str | None,
    pre_register: PortOneClient | None = None,
) -> tuple[Order, bool]:
    """The new order and True, or, for a repeated idempotency key, the first order and False.

    With `pre_register`, PortOne learns the amount first, so it refuses a tampered one
    itself; if PortOne fails, no order is created.
    """
    request_hash = fingerprint(data)
    if idempotency_key is not None:
        existing = await _by_idempotency_key(sessions, idempotency_key, request_hash)
        if existing is not None:
            return existing, False
    payment_id = new_id("pay")
    if pre_register is not None:
        try:
            await pre_register.pre_register(
                payment_id, total_amount=data.amount, currency=data.currency
            )
        except PortOneApiError as exc:
            raise PortOneUnavailable(f"PortOne refused the pre-registration ({exc.type})") from exc
    values = {
        "id": new_id("ord"),
        "payment_id": payment_id,
        "order_name": data.order_name,
        "amount": data.amount,
        "currency": data.currency,
        "customer": data.customer.model_dump(by_alias=True, exclude_none=True)
        if data.customer
        else None,
        "metadata_": data.metadata,
        "idempotency_key": idempotency_key,
        "request_hash": request_hash,
    }
    statement = (
        insert(Order)
        .values(values)
        .on_conflict_do_nothing(index_elements=[Order.idempotency_key])
        .returning(Order)
    )
    async with sessions() as session, session.begin():
        order = await session.scalar(statement)
    if order is not None:
        return order, True
    # Another request with the same key won the insert between our read and our write.
    assert idempotency_key is not None
    winner = await _by_idempotency_key(sessions, idempotency_key, request_hash)
    assert winner is not None
    return winner, False


async def get_order(sessions: Sessions, order_id: str) -> Order:
    async with sessions() as session:
        order = await session.get(Order, order_id)
    if order is None:
        raise OrderNotFound(f"no order {order_id}")
    return order


async def list_events(sessions: Sessions, order_id: str) -> Sequence[OrderEvent]:
    async with sessions() as session:
        if await session.get(Order, order_id) is None:
            raise OrderNotFound(f"no order {order_id}")
        result = await session.scalars(
            select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.id)
        )
        return result.all()


async def _by_idempotency_key(sessions: Sessions, key: str, request_hash: str) -> Order | None:
    async with sessions() as session:
        order = await session.scalar(select(Order).where(Order.idempotency_key == key))
    if order is not None and order.request_hash != request_hash:
        raise IdempotencyKeyReused(f"Idempotency-Key {key!r} was used with another body")
    return order


async def changed_orders(
    sessions: Sessions,
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
    query = select(Order).where(Order.updated_at < _write_horizon())
    if statuses:
        query = query.where(Order.status.in_(statuses))
    if updated_after is not None:
        query = query.where(Order.updated_at > updated_after)
    if after is not None:
        query = query.where(tuple_(Order.updated_at, Order.id) > tuple_(*after))
    query = query.order_by(Order.updated_at, Order.id).limit(limit)
    async with sessions() as session:
        return list(await session.scalars(query))


def _write_horizon() -> ColumnElement[datetime]:
    in_flight = (
        select(func.min(text("xact_start")))
        .select_from(text("pg_stat_activity"))
        .where(
            text("datname = current_database()"),
            text("backend_xid IS NOT NULL"),
            text("pid <> pg_backend_pid()"),
        )
        .scalar_subquery()
    )
    return func.least(func.coalesce(in_flight, func.clock_timestamp()), func.clock_timestamp())
