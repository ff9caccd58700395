"""The declarative base, and the engine and session factory the process shares."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy import MetaData
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.util import greenlet_spawn

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Sessions = async_sessionmaker[AsyncSession]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def new_engine(url: str, *, pool_size: int = 30) -> AsyncEngine:
    # A pool as large as the concurrency it serves: overflow connections are closed on
    # return, and reopening them (TLS included) under load costs more than idle ones.
    # A third more may open for bursts (and close again).
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size // 3,
        pool_timeout=5.0,
        connect_args={"timeout": 5.0, "command_timeout": 15.0},
    )


def new_sessions(engine: AsyncEngine) -> Sessions:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """asyncpg itself, on a connection borrowed from the engine's pool.

    The payment path (lookup, lock, update, event) speaks SQL to asyncpg directly: py-spy
    put SQLAlchemy's ORM at 41 % of a completion's CPU. Borrowing from the one pool keeps
    one number of connections to size; straight from the pool (`raw_connection`), as a
    `Connection` around it cost ~0.05 ms of CPU per borrow.
    """
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        pooled = await engine.raw_connection()
    except dbapi_error as exc:  # opening a connection failed: wrapped as engine.connect() does
        error = sa_exc.DBAPIError.instance(None, None, exc, dbapi_error, dialect=engine.dialect)
        raise error from exc
    driver = pooled.driver_connection
    assert isinstance(driver, asyncpg.Connection)
    try:
        yield driver
    finally:
        # asyncpg's errors bypass SQLAlchemy: a dead connection, or one whose rollback
        # was itself cut short, must not go back to the pool. (Both may do I/O, hence the
        # greenlet SQLAlchemy's sync pool needs for it.)
        dead = driver.is_closed() or driver.is_in_transaction()
        await greenlet_spawn(pooled.invalidate if dead else pooled.close)


ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"


def migration_head() -> str | None:
    """The newest migration this code ships (None where the migrations are not deployed)."""
    if not ALEMBIC_INI.exists():
        return None
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(Config(str(ALEMBIC_INI))).get_current_head()


# SQLSTATE classes of a database that is not there: connection exception, insufficient
# resources ("too many clients"), operator intervention (shutting down, starting up).
UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57"})


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database could not be reached (retry), not that a query is wrong.

    It may come through SQLAlchemy (wrapped) or straight from asyncpg (`driver_connection`).
    """
    if isinstance(exc, OSError | sa_exc.TimeoutError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(
            exc, sa_exc.OperationalError | sa_exc.InterfaceError
        ):
            return True
        causes = [exc.orig, getattr(exc.orig, "__cause__", None)]
    else:
        causes = [exc]
    for cause in causes:
        if isinstance(cause, asyncpg.InterfaceError | OSError):
            return True
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate[:2] in UNAVAILABLE_SQLSTATE_CLASSES:
            return True
    return False
