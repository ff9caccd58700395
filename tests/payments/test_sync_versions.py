"""The payment path's one-statement write: decided on the row as read, written only if no
other writer has touched it since (its version, xmin); otherwise decided again under the lock."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from app.orders.order import Order
from app.payments.sync import Source
from app.portone.models import Payment
from app.wiring import Services
from tests.helpers import create_order, events, order_row, transitions
from tests.portone_payloads import payment_body


def snapshot(payment_id: str, **fields: Any) -> Payment:
    return Payment.model_validate(payment_body(payment_id, **fields))


async def read(services: Services, payment_id: str) -> Order:
    order = await services.sync.find(payment_id)
    assert order is not None
    return order


async def test_an_unchanged_row_is_written_in_one_go(
    client: httpx.AsyncClient, services: Services, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    seen = await read(services, order["paymentId"])

    observation = await services.sync.apply(
        order["paymentId"], snapshot(order["paymentId"]), Source.COMPLETE, seen
    )

    stored = await order_row(db, order["orderId"])
    assert observation.order.status == stored["status"] == "PAID"
    assert observation.order.updated_at == stored["updated_at"] > seen.updated_at
    assert observation.order.version != seen.version
    assert await transitions(db, order["orderId"]) == [("PENDING", "PAID")]


async def test_a_row_paid_by_another_writer_since_it_was_read_is_not_paid_twice(
    client: httpx.AsyncClient, services: Services, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    payment_id = order["paymentId"]
    stale = await read(services, payment_id)
    await services.sync.apply(payment_id, snapshot(payment_id), Source.WEBHOOK)  # first

    observation = await services.sync.apply(
        payment_id, snapshot(payment_id), Source.COMPLETE, stale
    )

    assert observation.order.status == "PAID"
    assert observation.from_status == "PAID"  # decided again, on the row as it now stands
    assert await transitions(db, order["orderId"]) == [("PENDING", "PAID")]
    assert [(e["source"], e["from_status"]) for e in await events(db, order["orderId"])] == [
        ("webhook", "PENDING"),
        ("complete", "PAID"),
    ]


async def test_a_write_that_leaves_updated_at_alone_still_makes_the_row_stale(
    client: httpx.AsyncClient, services: Services, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    stale = await read(services, order["paymentId"])
    # As a writer outside the payment path might: the row changes, updated_at does not.
    await db.execute("UPDATE orders SET order_name = 'renamed' WHERE id = $1", order["orderId"])

    observation = await services.sync.apply(
        order["paymentId"], snapshot(order["paymentId"]), Source.COMPLETE, stale
    )

    assert observation.order.order_name == "renamed"  # the locked path read it again
    assert (await order_row(db, order["orderId"]))["status"] == "PAID"
    assert await transitions(db, order["orderId"]) == [("PENDING", "PAID")]


async def test_a_snapshot_that_changes_nothing_records_its_event_and_leaves_the_row(
    client: httpx.AsyncClient, services: Services, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    ready = snapshot(order["paymentId"], status="READY")
    await services.sync.apply(order["paymentId"], ready, Source.WEBHOOK)
    seen = await read(services, order["paymentId"])

    observation = await services.sync.apply(order["paymentId"], ready, Source.COMPLETE, seen)

    stored = await order_row(db, order["orderId"])
    assert observation.order == seen
    assert (stored["status"], stored["updated_at"]) == ("PENDING", seen.updated_at)
    assert [(e["source"], e["to_status"]) for e in await events(db, order["orderId"])] == [
        ("webhook", "PENDING"),
        ("complete", "PENDING"),
    ]


async def test_a_snapshot_that_changes_nothing_on_a_stale_row_is_decided_again(
    client: httpx.AsyncClient, services: Services, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    payment_id = order["paymentId"]
    ready = snapshot(payment_id, status="READY")
    await services.sync.apply(payment_id, ready, Source.WEBHOOK)
    stale = await read(services, payment_id)
    await services.sync.apply(payment_id, snapshot(payment_id), Source.WEBHOOK)  # paid since

    observation = await services.sync.apply(payment_id, ready, Source.COMPLETE, stale)

    assert observation.order.status == "PAID"
    assert observation.decision.stale  # older than the PAID snapshot the row now holds
    assert [(e["from_status"], e["to_status"]) for e in await events(db, order["orderId"])] == [
        ("PENDING", "PENDING"),
        ("PENDING", "PAID"),
        ("PAID", "PAID"),
    ]


async def test_a_row_read_for_another_payment_is_not_written(
    client: httpx.AsyncClient, services: Services, db: asyncpg.Connection
) -> None:
    order, other = await create_order(client), await create_order(client)
    wrong = await read(services, other["paymentId"])

    observation = await services.sync.apply(
        order["paymentId"], snapshot(order["paymentId"]), Source.COMPLETE, wrong
    )

    assert observation.order.id == order["orderId"]
    assert (await order_row(db, order["orderId"]))["status"] == "PAID"
    assert (await order_row(db, other["orderId"]))["status"] == "PENDING"
    assert await events(db, other["orderId"]) == []
