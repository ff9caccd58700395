"""A dispute at the card company is mirrored on the order and told to the shop; the
order's status stays what the money says."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
import respx
from pydantic import SecretStr

from app.config import Settings
from app.payments.sync import Source
from app.portone.models import Payment
from app.wiring import Services
from tests.emulated_portone import EmulatedPortOne
from tests.helpers import INTERNAL, create_order, events, make_settings


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(
        database_url,
        order_events_url="https://shop.test/order-events",
        order_events_secret=SecretStr("whsec_b3JkZXItZXZlbnRzLXNlY3JldC1mb3ItdGhlLXRlc3Rz"),
    )


async def test_a_dispute_opened_and_resolved_is_mirrored_recorded_and_told(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    emulated = EmulatedPortOne(portone)
    order = await create_order(client)
    emulated.pay(order)
    await emulated.deliver_webhooks(client)

    emulated.dispute(order, "UNRESOLVED", reason="not received")
    await emulated.deliver_webhooks(client)
    opened = (await client.get(f"/orders/{order['orderId']}", headers=INTERNAL)).json()
    emulated.dispute(order, "RESOLVED")
    await emulated.deliver_webhooks(client)
    resolved = (await client.get(f"/orders/{order['orderId']}", headers=INTERNAL)).json()

    assert opened["status"] == resolved["status"] == "PAID"
    [dispute] = opened["disputes"]
    assert (dispute["status"], dispute["reason"], dispute["resolvedAt"]) == (
        "UNRESOLVED",
        "not received",
        None,
    )
    [dispute] = resolved["disputes"]
    assert dispute["status"] == "RESOLVED"
    assert dispute["resolvedAt"] is not None
    types = [
        row["type"]
        for row in await db.fetch(
            "SELECT type FROM outbox_events WHERE order_id = $1 ORDER BY seq", order["orderId"]
        )
    ]
    assert types == ["order.paid", "order.dispute_opened", "order.dispute_resolved"]
    notes = [e["detail"] for e in await events(db, order["orderId"]) if "dispute" in e["detail"]]
    assert [note.rsplit("; ", 1)[1] for note in notes] == [
        "1 dispute opened (1 unresolved)",
        "1 dispute resolved (0 unresolved)",
    ]


async def test_a_late_read_from_before_a_dispute_undoes_nothing_and_tells_nothing_again(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    services: Services,
) -> None:
    emulated = EmulatedPortOne(portone)
    order = await create_order(client)
    emulated.pay(order)
    await emulated.deliver_webhooks(client)
    before = Payment.model_validate(emulated.emulator.get(order["paymentId"]).body())
    emulated.dispute(order, "UNRESOLVED", reason="not received")
    await emulated.deliver_webhooks(client)
    disputed = Payment.model_validate(emulated.emulator.get(order["paymentId"]).body())
    assert before.status_changed_at == disputed.status_changed_at  # only updatedAt moved

    late = await services.sync.apply(order["paymentId"], before, Source.RECONCILE)
    again = await services.sync.apply(order["paymentId"], disputed, Source.RECONCILE)

    assert late.decision.stale
    assert not again.decision.stale
    shown = (await client.get(f"/orders/{order['orderId']}", headers=INTERNAL)).json()
    assert [d["status"] for d in shown["disputes"]] == ["UNRESOLVED"]
    types = [
        row["type"]
        for row in await db.fetch(
            "SELECT type FROM outbox_events WHERE order_id = $1 ORDER BY seq", order["orderId"]
        )
    ]
    assert types == ["order.paid", "order.dispute_opened"]  # the same snapshot told nothing
