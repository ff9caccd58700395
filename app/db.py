"""The tables' metadata, the connections, and the one way a statement reaches Postgres.

Every statement is SQLAlchemy Core, built from the table definitions. A `Query` compiles
it once for asyncpg and runs the compiled text on a connection borrowed from asyncpg's
own pool: SQLAlchemy's per-execution machinery (execution context, result objects, a
greenlet hop per call) cost more CPU than the rest of a payment request together, and
its pool's checkout and return more than asyncpg's. The engine stays for what speaks
SQLAlchemy's connections: alembic, and the readiness check through it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import cache
from pathlib import Path
from typing import Any, cast

import asyncpg
from sqlalchemy import ColumnElement, MetaData, any_, make_url
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.types import UserDefinedType

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

DIALECT = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]


class RowVersion(UserDefinedType[int]):
    """Postgres's `xmin`: changed by every write of the row, by any writer."""

    cache_ok = True
    render_bind_cast = True

    def get_col_spec(self, **kw: Any) -> str:
        return "XID"


def one_of(column: ColumnElement[Any], values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN (…)` for values fixed in the code, as one array compiled with the statement
    (an IN list is expanded at execution instead)."""
    return column == any_(array(list(values), type_=column.type))


class Query:
    """A Core statement compiled once; run with named parameters on an asyncpg connection.

    Values written into the statement itself (`status == "OWED"`) are bound as they were
    given; named `bindparam`s are filled in from the keyword arguments of each call.
    """

    __slots__ = ("_binds", "_defaults", "sql")

    def __init__(self, statement: ClauseElement) -> None:
        compiled = statement.compile(dialect=DIALECT)
        if compiled.post_compile_params if isinstance(compiled, SQLCompiler) else False:
            # An IN over a list given with the statement: one parameter per item.
            compiled = statement.compile(
                dialect=DIALECT, compile_kwargs={"render_postcompile": True}
            )
        assert isinstance(compiled, SQLCompiler)
        self.sql = str(compiled)
        self._defaults = compiled.params
        processors: dict[str, Callable[[Any], Any]] = {}
        for bind, name in compiled.bind_names.items():
            processor = bind.type.dialect_impl(DIALECT).bind_processor(DIALECT)
            if processor is not None:
                processors[name] = processor
        # In the statement's order, each with its type's processor (most have none).
        self._binds = tuple((name, processors.get(name)) for name in compiled.positiontup or ())

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        given = self._defaults | params if params else self._defaults
        return [
            given[name] if processor is None else processor(given[name])
            for name, processor in self._binds
        ]

    async def rows(self, db: asyncpg.Connection, **params: Any) -> list[asyncpg.Record]:
        return await db.fetch(self.sql, *self.args(params))

    async def row(self, db: asyncpg.Connection, **params: Any) -> asyncpg.Record | None:
        return await db.fetchrow(self.sql, *self.args(params))

    async def value(self, db: asyncpg.Connection, **params: Any) -> Any:
        return await db.fetchval(self.sql, *self.args(params))

    async def run(self, db: asyncpg.Connection, **params: Any) -> str:
        status: str = await db.execute(self.sql, *self.args(params))
        return status


CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 15.0
ACQUIRE_TIMEOUT = 5.0


def new_engine(url: str) -> AsyncEngine:
    """SQLAlchemy's engine, for what needs its connections (the readiness check through
    alembic); a connection or two is all that takes."""
    return create_async_engine(
        url,
        pool_size=1,
        max_overflow=2,
        pool_timeout=ACQUIRE_TIMEOUT,
        connect_args={"timeout": CONNECT_TIMEOUT, "command_timeout": COMMAND_TIMEOUT},
    )


def new_pool(url: str, *, size: int) -> asyncpg.Pool:
    """asyncpg's pool for `url` (not yet opened: `await` it), connecting as the engine
    would: the same URL options, the same JSON codecs.

    As large as the concurrency it serves, its connections kept open once opened:
    reopening them (TLS included) under load costs more than keeping idle ones, and
    asyncpg's timer for idle connections costs CPU on every borrow. None is opened before
    it is needed, so the service starts while the database is down.
    """
    _, options = DIALECT.create_connect_args(make_url(url))  # type: ignore[no-untyped-call]
    for adapter_only in ("prepared_statement_cache_size", "prepared_statement_name_func"):
        options.pop(adapter_only, None)
    return asyncpg.create_pool(
        **options,
        timeout=CONNECT_TIMEOUT,
        command_timeout=COMMAND_TIMEOUT,
        min_size=0,
        max_size=size,
        max_inactive_connection_lifetime=0,
        init=_json_codecs,
        reset=_clean,
    )


async def _json_codecs(connection: asyncpg.Connection) -> None:
    # As SQLAlchemy's asyncpg dialect sets them: its bind processors, which `Query` runs,
    # hand JSON over as text, and rows arrive decoded.
    await connection.set_type_codec(
        "json",
        encoder=str.encode,
        decoder=lambda b: json.loads(b.decode()),
        schema="pg_catalog",
        format="binary",
    )
    await connection.set_type_codec(
        "jsonb",
        encoder=lambda s: b"\x01" + s.encode(),
        decoder=lambda b: json.loads(b[1:].decode()),
        schema="pg_catalog",
        format="binary",
    )


async def _clean(connection: asyncpg.Connection) -> None:
    """Nothing to undo when a connection goes back: the service leaves no session state
    (an advisory lock is released before its connection goes back), so asyncpg's reset
    query, a round trip per borrow, is left out. asyncpg still rolls back a transaction
    left open, and closes the connection if that fails."""


class Database:
    """Connections from asyncpg's pool; the engine for what needs SQLAlchemy's own."""

    def __init__(self, pool: asyncpg.Pool, engine: AsyncEngine) -> None:
        self.pool = pool
        self.engine = engine

    def connect(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        return _Borrowed(self.pool)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.connect() as db, db.transaction():
            yield db

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.pool.close(), CLOSE_SECONDS)
        except TimeoutError:
            self.pool.terminate()
        await self.engine.dispose()


CLOSE_SECONDS = 10.0


class _Borrowed:
    """A connection of the pool for the block. Waiting for one gives up after
    ACQUIRE_TIMEOUT (`TimeoutError`: the database is unavailable); asyncpg's own timeout
    would run the borrow as a task of its own, every time."""

    __slots__ = ("_connection", "_pool")

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def __aenter__(self) -> asyncpg.Connection:
        async with asyncio.timeout(ACQUIRE_TIMEOUT):
            self._connection = await self._pool.acquire()
        # The pool's proxy forwards every method of a connection.
        return cast(asyncpg.Connection, self._connection)

    async def __aexit__(self, *exc_info: object) -> None:
        await self._pool.release(self._connection)


ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"


@cache
def migration_head() -> str | None:
    """The newest migration this code ships (None where the migrations are not deployed);
    read once per process, since loading them compiles every revision file."""
    if not ALEMBIC_INI.exists():
        return None
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(Config(str(ALEMBIC_INI))).get_current_head()


# SQLSTATE classes of a database that cannot be used: connection exception, insufficient
# resources ("too many clients"), operator intervention (shutting down, starting up),
# credentials refused, no such database (both fixed by ops, not by the caller); and
# transaction rollback (a deadlock or serialization failure: the same call may succeed).
UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "28", "3D", "40"})
# A table or column the code needs is missing: the schema is behind it (or was never
# migrated), and ops' `alembic upgrade head` puts that right.
SCHEMA_BEHIND_SQLSTATES = frozenset({"42P01", "42703"})


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE Postgres answered with, through SQLAlchemy's wrapping or not."""
    for cause in (
        exc,
        getattr(exc, "orig", None),
        getattr(getattr(exc, "orig", None), "__cause__", None),
    ):
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str):
            return sqlstate
    return None


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database could not be reached or could not finish the work
    now (retry), not that a query is wrong.

    It may come through SQLAlchemy (wrapped) or straight from asyncpg (`Database.connect`).
    asyncpg's protocol out of step (`InternalClientError`) is Postgres ending a session
    the pool held: its goodbye was read before the socket closed, and the next statement
    finds the connection still in the operation the goodbye began (asyncpg then closes it).
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
        if isinstance(cause, asyncpg.InterfaceError | asyncpg.InternalClientError | OSError):
            return True
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and (
            sqlstate[:2] in UNAVAILABLE_SQLSTATE_CLASSES or sqlstate in SCHEMA_BEHIND_SQLSTATES
        ):
            return True
    return False
