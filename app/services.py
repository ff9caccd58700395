"""Everything a process shares: settings, the database, the PortOne client, the one path.

The web app opens it in its lifespan; the CLI commands open the same thing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db import Sessions, new_engine, new_sessions
from app.payments.rules import Policy
from app.payments.sync import PaymentSync
from app.portone.client import PortOneClient, new_http_client


@dataclass(frozen=True)
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: Sessions
    portone: PortOneClient
    sync: PaymentSync


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    if settings.database_url is None:
        raise RuntimeError("DATABASE_URL is not set")
    engine = new_engine(settings.database_url)
    http = new_http_client(str(settings.portone_api_base_url), settings.api_secret)
    try:
        sessions = new_sessions(engine)
        portone = PortOneClient(http, store_id=settings.store_id)
        policy = Policy(settings.store_id, settings.accept_test_payments)
        sync = PaymentSync(sessions, portone, policy, auto_cancel=settings.auto_cancel_on_mismatch)
        yield Services(settings, engine, sessions, portone, sync)
    finally:
        await http.aclose()
        await engine.dispose()
