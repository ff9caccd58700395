"""`Database.connect`: a connection borrowed from asyncpg's pool, and given back clean; and
`Query`, a Core statement compiled once and run on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import String, bindparam, func, literal, select
from sqlalchemy.dialects.postgresql import JSONB

from app.config import Settings
from app.db import Database, Query, database_unavailable, new_engine, new_pool, one_of
from tests.postgres_proxy import postgres_error


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    assert settings.database_url is not None
    url = settings.database_url.get_secret_value()
    database = Database(await new_pool(url, size=1), new_engine(url))
    yield database
    await database.close()


async def _backend(database: Database) -> tuple[int, bool]:
    async with database.connect() as db:
        return await db.fetchval("SELECT pg_backend_pid()"), db.is_in_transaction()


async def test_a_healthy_connection_goes_back_to_the_pool(database: Database) -> None:
    first, _ = await _backend(database)
    assert await _backend(database) == (first, False)


async def test_a_connection_left_in_a_transaction_comes_back_rolled_back(
    database: Database,
) -> None:
    async with database.connect() as db:
        await db.execute("BEGIN")  # as if a rollback had been cut short
        await db.execute("CREATE TEMPORARY TABLE left_behind (id int)")

    async with database.connect() as db:
        assert not db.is_in_transaction()
        assert await db.fetchval("SELECT to_regclass('left_behind')") is None


async def test_a_dead_connection_is_not_reused_and_its_error_means_unavailable(
    database: Database, db: asyncpg.Connection
) -> None:
    first, _ = await _backend(database)
    async with database.connect() as borrowed:
        await db.execute("SELECT pg_terminate_backend($1)", first)
        for _ in range(100):  # let the client read the server's goodbye, as between requests
            if _closed(borrowed):
                break
            await asyncio.sleep(0.02)
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError)) as raised:
            await borrowed.fetchval("SELECT 1")

    assert database_unavailable(raised.value)
    pid, _ = await _backend(database)
    assert pid != first


def _closed(borrowed: asyncpg.Connection) -> bool:
    try:
        return borrowed.is_closed()
    except asyncpg.InterfaceError:  # the pool took back the connection that died
        return True


async def test_a_connection_told_its_session_ended_is_not_reused_and_means_unavailable(
    database: Database,
) -> None:
    first, _ = await _backend(database)
    async with database.connect() as idle:
        protocol = idle._protocol  # type: ignore[attr-defined]
    # Postgres's goodbye read while the connection waits in the pool, its closing of the
    # socket not yet (as on a busy host when Postgres restarts): the protocol is out of
    # step with the server.
    protocol.data_received(
        postgres_error("57P01", "terminating connection due to administrator command")
    )
    with pytest.raises(asyncpg.InternalClientError) as raised:
        async with database.connect() as borrowed:
            await borrowed.fetchval("SELECT 1")

    assert database_unavailable(raised.value)
    pid, _ = await _backend(database)
    assert pid != first


async def test_a_deadlock_is_worth_a_retry_and_a_wrong_query_is_not(database: Database) -> None:
    async with database.connect() as db:
        with pytest.raises(asyncpg.PostgresError) as deadlock:
            await db.execute(
                "DO $$ BEGIN RAISE EXCEPTION 'deadlock' USING ERRCODE = '40P01'; END $$"
            )
        with pytest.raises(asyncpg.PostgresError) as wrong:
            await db.execute("SELECT 1 / 0")

    assert database_unavailable(deadlock.value)
    assert not database_unavailable(wrong.value)


async def test_a_query_binds_named_values_through_their_types(database: Database) -> None:
    document = Query(select(func.jsonb_typeof(bindparam("value", type_=JSONB))))
    async with database.connect() as db:
        assert await document.value(db, value={"a": [1]}) == "object"
        assert await document.value(db, value=[1]) == "array"


async def test_a_query_expands_a_list_given_with_the_statement(database: Database) -> None:
    def member(value: str) -> Query:
        return Query(select(literal(value).in_(["a", "b"])))

    fixed = Query(select(one_of(bindparam("value", type_=String), ["a", "b"])))
    async with database.connect() as db:
        assert await member("b").value(db) is True
        assert await member("c").value(db) is False
        assert await fixed.value(db, value="a") is True
        assert await fixed.value(db, value="z") is False
