from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
import respx
import stamina
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from app.config import Settings
from app.main import create_app
from app.payments import single_flight
from app.sandbox import delivery
from app.tables import metadata
from app.wiring import Services
from tests.database import fresh_database, postgres_server
from tests.helpers import INTERNAL, make_settings, mocked_portone
from tests.postgres_proxy import PostgresProxy


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with postgres_server() as server, fresh_database(server) as url:
        yield url


@pytest.fixture(autouse=True, scope="session")
def _no_retry_waits() -> Iterator[None]:
    with stamina.set_testing(True, attempts=3):
        yield


@pytest.fixture(autouse=True)
def _sandbox_webhooks_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox's webhooks go the instant a payment changes, so that each test decides
    what comes first (`webhooks_late` gives them PortOne's moment)."""
    monkeypatch.setattr(delivery, "DELAY", 0.0)


@pytest.fixture
def webhooks_late(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox's webhooks come a second after the change, as PortOne's do."""
    monkeypatch.setattr(delivery, "DELAY", 1.0)


# Rows deleted, children first: on tables this small, much cheaper than TRUNCATE, which
# swaps every table's files (and most of a test's setup time with it).
EMPTY_TABLES = "; ".join(f'DELETE FROM "{t.name}"' for t in reversed(metadata.sorted_tables))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A raw connection for assertions; every test starts with empty tables."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    await connection.execute(EMPTY_TABLES)
    yield connection
    await connection.close()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


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
    return INTERNAL


@pytest.fixture
def later_than_reuse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each completion of the test comes later than the not-yet-paid answer of the one
    before it is reused (as a customer's retry does)."""
    monkeypatch.setattr(single_flight, "REUSE_SECONDS", 0.0)


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
