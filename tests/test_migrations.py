"""The migrations build, on an empty database, exactly the schema the models describe."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import asyncpg
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from tests.database import ROOT, with_database

TABLES = {"orders", "order_history"}


def dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _execute(url: str, sql: str) -> None:
    connection = await asyncpg.connect(dsn(url))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _fetch_column(url: str, sql: str) -> list[str]:
    connection = await asyncpg.connect(dsn(url))
    try:
        return [str(row[0]) for row in await connection.fetch(sql)]
    finally:
        await connection.close()


def tables(url: str) -> set[str]:
    sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    return set(asyncio.run(_fetch_column(url, sql)))


def applied_revisions(url: str) -> list[str]:
    return asyncio.run(_fetch_column(url, "SELECT version_num FROM alembic_version"))


def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["configure_logger"] = False
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision(config: Config) -> str:
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    """A brand-new database beside the session's one, dropped afterwards."""
    server = with_database(database_url, "postgres")
    name = f"verifier_migrations_{secrets.token_hex(4)}"
    asyncio.run(_execute(server, f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(database_url, name)
    finally:
        asyncio.run(_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_upgrade_builds_the_schema_on_an_empty_database(empty_database: str) -> None:
    config = alembic_config(empty_database)

    command.upgrade(config, "head")

    assert tables(empty_database) >= TABLES | {"alembic_version"}
    assert applied_revisions(empty_database) == [head_revision(config)]


def test_migrations_match_the_models(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "head")

    command.check(config)


def test_downgrade_to_base_leaves_nothing_and_upgrade_works_again(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "head")

    command.downgrade(config, "base")

    assert tables(empty_database) <= {"alembic_version"}
    assert applied_revisions(empty_database) == []

    command.upgrade(config, "head")

    assert tables(empty_database) >= TABLES
    assert applied_revisions(empty_database) == [head_revision(config)]
    command.check(config)
