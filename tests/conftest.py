from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import httpx
import pytest
import respx
import stamina
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from app.config import Settings
from app.main import create_app
from app.payments import shared
from app.services import Services
from tests.database import fresh_database, postgres_server
from tests.portone_payloads import STORE_ID
from tests.postgres_proxy import PostgresProxy

PORTONE_HOST = "portone.test"
PORTONE = f"https://{PORTONE_HOST}"
TOKEN = "internal-test-token-of-32-characters"
WEBHOOK_SECRET = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0wMDAx"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with postgres_server() as server, fresh_database(server) as url:
        yield url


@pytest.fixture(autouse=True, scope="session")
def _no_retry_waits() -> Iterator[None]:
    with stamina.set_testing(True, attempts=3):
        yield


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A raw connection for assertions; every test starts with empty tables."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    tables = await connection.fetch(
        "SELECT tablename FROM pg_tables"
        " WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
    )
    names = ", ".join(f'"{row["tablename"]}"' for row in tables)
    await connection.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    yield connection
    await connection.close()


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "portone_mode": "live",
        "database_url": database_url,
        "portone_api_base_url": PORTONE,
        "portone_api_secret": SecretStr("portone-test-secret"),
        "portone_store_id": STORE_ID,
        "portone_channel_key": "channel-key-test",
        "portone_webhook_secrets": [SecretStr(WEBHOOK_SECRET)],
        "internal_api_token": SecretStr(TOKEN),
        "reconcile_interval_seconds": 0,
    }
    return Settings(**(values | overrides))


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@contextmanager
def mocked_portone() -> Iterator[respx.MockRouter]:
    """PortOne, mocked on the production client itself: respx takes over the transport of
    every httpx client (aiohttp's included). Requests to other hosts (the tests' own
    clients) go through; a request to PortOne that no test routed fails the test."""
    with respx.mock(using="httpx", assert_all_called=False) as elsewhere:
        elsewhere.route(host__regex=rf"^(?!{re.escape(PORTONE_HOST)}$)").pass_through()
        with respx.mock(base_url=PORTONE, assert_all_called=False, using="httpx") as router:
            yield router


@pytest.fixture
def portone() -> Iterator[respx.MockRouter]:
    with mocked_portone() as router:
        yield router


@pytest.fixture
async def app(settings: Settings, db: asyncpg.Connection) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def services(app: FastAPI) -> Services:
    services: Services = app.state.services
    return services


@pytest.fixture
async def client(app: FastAPI, portone: respx.MockRouter) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
        yield client


@pytest.fixture
def internal() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def later_than_reuse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each completion of the test comes later than the not-yet-paid answer of the one
    before it is reused (as a customer's retry does)."""
    monkeypatch.setattr(shared, "REUSE_SECONDS", 0.0)


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[PostgresProxy]:
    """A proxy to the test database (on TCP loopback), up."""
    url = make_url(database_url)
    if url.host not in ("127.0.0.1", "localhost"):
        pytest.skip("the database is not on TCP loopback")
    proxy = PostgresProxy(url.port or 5432)
    await proxy.start()
    yield proxy
    await proxy.close()
