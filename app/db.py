"""The tables' metadata, the engine, and the one way a statement reaches Postgres.

Every statement is SQLAlchemy Core, built from the table definitions. A `Query` compiles
it once for asyncpg and runs the compiled text on a connection borrowed from the
engine's pool: SQLAlchemy's per-execution machinery (execution context, result objects,
a greenlet hop per call) cost more CPU than the rest of a payment request together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import ColumnElement, MetaData, any_
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.types import UserDefinedType
from sqlalchemy.util import greenlet_spawn

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

    __slots__ = ("_defaults", "_names", "_processors", "sql")

    def __init__(self, statement: ClauseElement) -> None:
        compiled = statement.compile(dialect=DIALECT)
        if compiled.post_compile_params if isinstance(compiled, SQLCompiler) else False:
            # An IN over a list given with the statement: one parameter per item.
            compiled = statement.compile(
                dialect=DIALECT, compile_kwargs={"render_postcompile": True}
            )
        assert isinstance(compiled, SQLCompiler)
        self.sql = str(compiled)
        self._names = tuple(compiled.positiontup or ())
        self._defaults = compiled.params
        processors: dict[str, Callable[[Any], Any]] = {}
        for bind, name in compiled.bind_names.items():
            processor = bind.type.dialect_impl(DIALECT).bind_processor(DIALECT)
            if processor is not None:
                processors[name] = processor
        self._processors = processors

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        values = []
        for name in self._names:
            value = params[name] if name in params else self._defaults[name]
            processor = self._processors.get(name)
            values.append(value if processor is None else processor(value))
        return values

    async def rows(self, db: asyncpg.Connection, **params: Any) -> list[asyncpg.Record]:
        return await db.fetch(self.sql, *self.args(params))

    async def row(self, db: asyncpg.Connection, **params: Any) -> asyncpg.Record | None:
        return await db.fetchrow(self.sql, *self.args(params))

    async def value(self, db: asyncpg.Connection, **params: Any) -> Any:
        return await db.fetchval(self.sql, *self.args(params))

    async def run(self, db: asyncpg.Connection, **params: Any) -> str:
        status: str = await db.execute(self.sql, *self.args(params))
        return status


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


class Database:
    """Connections from the engine's pool, as asyncpg connections."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[asyncpg.Connection]:
        """An asyncpg connection borrowed from the pool (one number of connections to size);
        straight from the pool, as a `Connection` around it costs CPU on every borrow."""
        engine = self.engine
        dbapi_error = engine.dialect.loaded_dbapi.Error
        try:
            pooled = await engine.raw_connection()
        except dbapi_error as exc:  # opening a connection failed: wrapped as connect() does
            error = sa_exc.DBAPIError.instance(None, None, exc, dbapi_error, dialect=engine.dialect)
            raise error from exc
        driver = pooled.driver_connection
        assert isinstance(driver, asyncpg.Connection)
        try:
            yield driver
        finally:
            # asyncpg's errors bypass SQLAlchemy: a dead connection, or one whose rollback
            # was itself cut short, must not go back to the pool. (Both may do I/O, hence
            # the greenlet SQLAlchemy's sync pool needs for it.)
            dead = driver.is_closed() or driver.is_in_transaction()
            await greenlet_spawn(pooled.invalidate if dead else pooled.close)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.connect() as db, db.transaction():
            yield db


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
        if isinstance(sqlstate, str) and (
            sqlstate[:2] in UNAVAILABLE_SQLSTATE_CLASSES or sqlstate in SCHEMA_BEHIND_SQLSTATES
        ):
            return True
    return False
