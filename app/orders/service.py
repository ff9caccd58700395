"""Creating and reading orders."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from app.db import Database
from app.errors import IdempotencyKeyReused, OrderNotFound
from app.idempotency import fingerprint
from app.ids import new_id
from app.orders import store
from app.orders.order import Order
from app.orders.schemas import OrderCreate
from app.payments.sync import PaymentSync, Source
from app.portone.client import PortOneClient
from app.portone.errors import PortOneApiError, PortOneUnavailable


class Orders:
    def __init__(
        self,
        database: Database,
        sync: PaymentSync,
        *,
        pre_register: PortOneClient | None = None,
    ) -> None:
        """`pre_register`: PortOne learns each new order's amount first, so it refuses a
        tampered one itself (PORTONE_PRE_REGISTER)."""
        self._database = database
        self._sync = sync
        self._pre_register = pre_register

    async def create(self, data: OrderCreate, *, idempotency_key: str | None) -> tuple[Order, bool]:
        """The new order and True, or, for a repeated idempotency key, the first order and
        False. If pre-registration fails, no order is created."""
        request_hash = fingerprint(data)
        if idempotency_key is not None:
            existing = await self._by_idempotency_key(idempotency_key, request_hash)
            if existing is not None:
                return existing, False
        payment_id = new_id("pay")
        if self._pre_register is not None:
            try:
                await self._pre_register.pre_register(
                    payment_id,
                    total_amount=data.amount,
                    currency=data.currency,
                    idempotency_key=f"pre-register-{payment_id}",
                )
            except PortOneApiError as exc:
                raise PortOneUnavailable(
                    f"PortOne refused the pre-registration ({exc.type})"
                ) from exc
        customer = (
            data.customer.model_dump(by_alias=True, exclude_none=True) if data.customer else None
        )
        async with self._database.connect() as db:
            order = await store.insert_order(
                db,
                id=new_id("ord"),
                payment_id=payment_id,
                order_name=data.order_name,
                amount=data.amount,
                currency=data.currency,
                customer=customer,
                metadata=data.metadata,
                return_url=data.return_url,
                expires_at=data.expires_at,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
            )
        if order is not None:
            return order, True
        # Another request with the same key won the insert between our read and our write.
        assert idempotency_key is not None
        winner = await self._by_idempotency_key(idempotency_key, request_hash)
        assert winner is not None
        return winner, False

    async def get(self, order_id: str) -> Order:
        async with self._database.connect() as db:
            order = await store.get(db, order_id)
        if order is None:
            raise OrderNotFound(f"no order {order_id}")
        return order

    async def cancel(self, order_id: str) -> Order:
        """The shop closes an order that has taken no money (`PaymentSync.close`)."""
        return await self._sync.close(order_id, Source.CANCEL, "cancelled by the shop")

    async def history(self, order_id: str) -> list[asyncpg.Record]:
        async with self._database.connect() as db:
            if await store.get(db, order_id) is None:
                raise OrderNotFound(f"no order {order_id}")
            return await store.history(db, order_id)

    async def changed(
        self,
        *,
        statuses: Sequence[str],
        updated_after: datetime | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Order]:
        async with self._database.connect() as db:
            return await store.changed(
                db, statuses=statuses, updated_after=updated_after, after=after, limit=limit
            )

    async def _by_idempotency_key(self, key: str, request_hash: str) -> Order | None:
        async with self._database.connect() as db:
            order = await store.by_idempotency_key(db, key)
        if order is not None and order.request_hash != request_hash:
            raise IdempotencyKeyReused(f"Idempotency-Key {key!r} was used with another body")
        return order
