"""Whether this process can serve: the database answers and its schema is the code's."""

from __future__ import annotations

import logging

from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from app import metrics
from app.db import Database, database_unavailable, sqlstate_of
from app.errors import DatabaseUnavailable
from app.orders import store as orders_store
from app.outbox import store as outbox_store
from app.payments import store as payments_store

logger = logging.getLogger(__name__)

CREDENTIALS = "28"  # SQLSTATE class: invalid authorization specification


class Readiness:
    def __init__(self, database: Database, migration_head: str | None) -> None:
        self._database = database
        self._migration_head = migration_head

    async def check_ready(self) -> str | None:
        """The schema's revision; `DatabaseUnavailable` with its `reason` (unreachable,
        credentials refused, never migrated, behind) unless it is the code's head."""
        try:
            async with self._database.engine.connect() as connection:
                revision = await connection.run_sync(_current_revision)
        except Exception as exc:
            # The driver's own words name hosts and addresses: the log has them, not the answer.
            logger.warning("database check failed: %s", exc)
            raise _unready(exc) from exc
        expected = self._migration_head
        if expected is not None and revision is None:
            raise DatabaseUnavailable(
                "the database was never migrated: run alembic upgrade head",
                reason="never migrated",
            )
        if expected is not None and revision != expected:
            raise DatabaseUnavailable(
                f"database schema is at {revision}, the code needs {expected}: "
                "run alembic upgrade head",
                reason="behind",
            )
        return revision

    async def report(self) -> None:
        """One line at start-up: whether the database answered, and where its schema is."""
        try:
            revision = await self.check_ready()
        except DatabaseUnavailable as exc:
            logger.warning("not ready: %s (%s)", exc.detail, exc.extra["reason"])
            return
        logger.info("database answered; schema at %s, the code's head", revision)

    async def refresh_gauges(self) -> None:
        """The stuck-work gauges, read from the database (the one shared state). Without
        the database they keep their last values: a scrape during an outage still gets
        this process's counters, which tell what the outage did."""
        try:
            async with self._database.connect() as db:
                owed = await orders_store.count_owed_compensations(db)
                oldest = await payments_store.oldest_unprocessed_age(db)
                held = await outbox_store.count_held_orders(db)
        except Exception as exc:
            logger.warning("stuck-work gauges not refreshed: %s", exc)
            return
        metrics.compensations_owed.set(owed)
        metrics.oldest_unprocessed_webhook_age.set(oldest)
        metrics.order_events_held.set(held)


def _unready(exc: Exception) -> DatabaseUnavailable:
    sqlstate = sqlstate_of(exc) or ""
    if sqlstate.startswith(CREDENTIALS):
        return DatabaseUnavailable(
            "the database refused our credentials: check DATABASE_URL",
            reason="credentials refused",
        )
    what = "did not answer" if database_unavailable(exc) else f"failed ({type(exc).__name__})"
    return DatabaseUnavailable(f"the database {what}", reason="unreachable")


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
