"""Everything a process shares: settings, the database, the PortOne client, the one path.

The web app opens it in its lifespan; the CLI commands open the same thing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from app import metrics
from app.config import Settings
from app.db import Sessions, migration_head, new_engine, new_sessions
from app.events.delivery import EventDelivery
from app.events.outbox import Outbox
from app.payments.compensation import Compensator
from app.payments.inbox import WebhookInbox
from app.payments.rules import Policy
from app.payments.sync import PaymentSync
from app.portone.client import PortOneClient, new_http_client
from app.portone.webhooks import decode_secret
from app.reconcile import Reconciler
from app.refunds.service import Refunds


@dataclass(frozen=True)
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: Sessions
    portone: PortOneClient
    sync: PaymentSync
    compensator: Compensator
    inbox: WebhookInbox
    refunds: Refunds
    migration_head: str | None

    @property
    def pre_registration(self) -> PortOneClient | None:
        """The client that pre-registers new orders' amounts, when PORTONE_PRE_REGISTER is on."""
        return self.portone if self.settings.portone_pre_register else None

    def event_delivery(self, http: httpx.AsyncClient) -> EventDelivery | None:
        """The outbox's delivery to ORDER_EVENTS_URL, when one is configured."""
        url, secret = self.settings.order_events_url, self.settings.order_events_secret
        if url is None or secret is None:
            return None
        key = decode_secret(secret.get_secret_value())
        return EventDelivery(self.engine, self.sessions, http, url=str(url), key=key)

    def reconciler(self, stopping: asyncio.Event | None = None) -> Reconciler:
        return Reconciler(
            self.engine,
            self.sessions,
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
    engine = new_engine(
        settings.database_url.get_secret_value(), pool_size=settings.database_pool_size
    )
    http = new_http_client(
        portone_base_url or settings.api_base_url, settings.api_secret, portone_transport
    )
    try:
        sessions = new_sessions(engine)
        portone = PortOneClient(http, store_id=settings.store_id, observe=metrics.observe_portone)
        policy = Policy(settings.store_id, settings.accept_test_payments)
        compensator = Compensator(engine, portone)
        sync = PaymentSync(
            engine,
            portone,
            policy,
            auto_cancel=settings.auto_cancel_on_mismatch,
            on_compensation_owed=compensator.compensate,
            outbox=Outbox(settings) if settings.order_events_url else None,
        )
        inbox = WebhookInbox(
            engine,
            sync,
            keys=settings.webhook_keys,
            store_id=settings.store_id,
            tolerance_seconds=settings.webhook_tolerance_seconds,
        )
        refunds = Refunds(sessions, portone, sync)
        yield Services(
            settings,
            engine,
            sessions,
            portone,
            sync,
            compensator,
            inbox,
            refunds,
            migration_head=migration_head(),
        )
    finally:
        await http.aclose()
        await engine.dispose()
