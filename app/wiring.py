"""Everything a process shares, built once: the database, the PortOne client, the one
path and the services around it.

The web app opens it in its lifespan (routers get what they use through `app.deps`);
the CLI commands open the same thing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from app import metrics, tls
from app.config import Settings
from app.db import Database, migration_head, new_engine, new_pool
from app.orders.service import Orders
from app.outbox.delivery import EventDelivery
from app.outbox.service import OutboxEvents
from app.outbox.writer import Outbox
from app.payments.compensation import Compensator
from app.payments.complete import Completion
from app.payments.confirmation import Confirmation
from app.payments.inbox import WebhookInbox
from app.payments.return_door import ReturnDoor
from app.payments.rules import Policy
from app.payments.sync import PaymentSync
from app.portone.client import Cap, PortOneClient, new_http_client
from app.readiness import Readiness
from app.reconcile import Reconciler
from app.refunds.service import Refunds
from app.refunds.settlement import Settlement
from app.standard_webhooks import decode_secret


@dataclass(frozen=True)
class Services:
    settings: Settings
    database: Database
    portone: PortOneClient
    sync: PaymentSync
    compensator: Compensator
    orders: Orders
    completion: Completion
    return_door: ReturnDoor
    inbox: WebhookInbox
    refunds: Refunds
    outbox_events: OutboxEvents
    readiness: Readiness

    def event_delivery(self, http: httpx.AsyncClient) -> EventDelivery | None:
        """The outbox's delivery to ORDER_EVENTS_URL, when one is configured."""
        url, secret = self.settings.order_events_url, self.settings.order_events_secret
        if url is None or secret is None:
            return None
        key = decode_secret(secret.get_secret_value())
        return EventDelivery(self.database, http, url=str(url), key=key)

    def reconciler(self, stopping: asyncio.Event | None = None) -> Reconciler:
        return Reconciler(
            self.database,
            self.portone,
            self.sync,
            self.compensator,
            store_id=self.settings.store_id,
            stopping=stopping,
        )


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    portone_base_url: str | None = None,
    portone_transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[Services]:
    if settings.database_url is None:
        raise RuntimeError("DATABASE_URL is not set")
    url = settings.database_url.get_secret_value()
    database = Database(await new_pool(url, size=settings.database_pool_size), new_engine(url))
    http = new_http_client(
        portone_base_url or settings.api_base_url,
        settings.api_secret,
        portone_transport,
        max_connections=settings.portone_max_in_flight,
        verify=tls.context(),
    )
    try:
        cap = Cap(settings.portone_max_in_flight, on_wait=metrics.portone_waits.inc)
        portone = PortOneClient(
            http, store_id=settings.store_id, cap=cap, observe=metrics.observe_portone
        )
        compensator = Compensator(database, portone)
        outbox = Outbox(settings) if settings.order_events_url else None
        settlement = Settlement(database, outbox)
        sync = PaymentSync(
            database,
            portone,
            Policy(settings.store_id, settings.accept_test_payments),
            auto_cancel=settings.auto_cancel_on_mismatch,
            on_compensation_owed=compensator.compensate,
            on_applied=settlement.settle,
            outbox=outbox,
        )
        confirmation = Confirmation(
            portone, sync, accept_test_payments=settings.accept_test_payments
        )
        completion = Completion(sync, confirmation)
        yield Services(
            settings=settings,
            database=database,
            portone=portone,
            sync=sync,
            compensator=compensator,
            orders=Orders(
                database, sync, pre_register=portone if settings.portone_pre_register else None
            ),
            completion=completion,
            return_door=ReturnDoor(completion),
            inbox=WebhookInbox(
                database,
                sync,
                keys=settings.webhook_keys,
                store_id=settings.store_id,
                tolerance_seconds=settings.webhook_tolerance_seconds,
            ),
            refunds=Refunds(database, portone, sync, settlement),
            outbox_events=OutboxEvents(database),
            readiness=Readiness(database, migration_head()),
        )
    finally:
        await http.aclose()
        await database.close()
