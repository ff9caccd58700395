"""`driver_connection`: asyncpg borrowed from SQLAlchemy's pool, and given back clean."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db import database_unavailable, driver_connection, new_engine


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    assert settings.database_url is not None
    engine = new_engine(settings.database_url.get_secret_value(), pool_size=1)
    yield engine
    await engine.dispose()


async def _backend(engine: AsyncEngine) -> tuple[int, bool]:
    async with driver_connection(engine) as db:
        return await db.fetchval("SELECT pg_backend_pid()"), db.is_in_transaction()


async def test_a_healthy_connection_goes_back_to_the_pool(engine: AsyncEngine) -> None:
    first, _ = await _backend(engine)
    assert await _backend(engine) == (first, False)


async def test_a_connection_left_in_a_transaction_is_not_reused(engine: AsyncEngine) -> None:
    first, _ = await _backend(engine)
    async with driver_connection(engine) as db:
        await db.execute("BEGIN")  # as if a rollback had been cut short

    pid, in_transaction = await _backend(engine)
    assert pid != first
    assert not in_transaction


async def test_a_dead_connection_is_not_reused_and_its_error_means_unavailable(
    engine: AsyncEngine, db: asyncpg.Connection
) -> None:
    first, _ = await _backend(engine)
    async with driver_connection(engine) as borrowed:
        await db.execute("SELECT pg_terminate_backend($1)", first)
        for _ in range(100):  # let the client read the server's goodbye, as between requests
            if borrowed.is_closed():
                break
            await asyncio.sleep(0.02)
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError)) as raised:
            await borrowed.fetchval("SELECT 1")

    assert database_unavailable(raised.value)
    pid, _ = await _backend(engine)
    assert pid != first
