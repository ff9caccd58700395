"""What the background jobs share: one replica at a time, and a steady beat."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sqlalchemy import BigInteger, bindparam, func, select

from app.db import Database, Query, database_unavailable

logger = logging.getLogger(__name__)

TRY_LOCK = Query(select(func.pg_try_advisory_lock(bindparam("key", type_=BigInteger))))
UNLOCK = Query(select(func.pg_advisory_unlock(bindparam("key", type_=BigInteger))))


@asynccontextmanager
async def advisory_lock(database: Database, key: int) -> AsyncIterator[bool]:
    """True while this process holds the Postgres advisory lock `key`, False if another does.

    The lock belongs to a connection held for the whole block; it is released before the
    pool can hand that connection to anyone else, and by Postgres if the process dies.
    """
    async with database.connect() as db:
        locked = bool(await TRY_LOCK.value(db, key=key))
        try:
            yield locked
        finally:
            if locked:
                await UNLOCK.value(db, key=key)


async def every(
    interval: float, stopping: asyncio.Event, job: Callable[[], Awaitable[object]], name: str
) -> None:
    """Run `job` every `interval` seconds until `stopping` is set; a failure waits for the next."""
    while True:
        try:
            await asyncio.wait_for(stopping.wait(), timeout=interval)
            return
        except TimeoutError:
            pass
        try:
            await job()
        except Exception as exc:
            if database_unavailable(exc):
                logger.warning("%s failed: the database did not answer (%s)", name, exc)
            else:
                logger.exception("%s failed", name)
