"""Whether this process can serve: the database answers and its schema is the code's."""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from app import metrics
from app.db import Database
from app.errors import DatabaseUnavailable
from app.orders import store as orders
from app.payments import inbox


class Health:
    def __init__(self, database: Database, migration_head: str | None) -> None:
        self._database = database
        self._migration_head = migration_head

    async def check_ready(self) -> None:
        """Raise `DatabaseUnavailable` saying why, unless the schema is at the code's head."""
        async with self._database.engine.connect() as connection:
            revision = await connection.run_sync(_current_revision)
        expected = self._migration_head
        if expected is not None and revision != expected:
            raise DatabaseUnavailable(
                f"database schema is at {revision}, the code needs {expected}: "
                "run alembic upgrade head"
            )

    async def refresh_gauges(self) -> None:
        """The stuck-work gauges, read from the database (the one shared state)."""
        async with self._database.connect() as db:
            metrics.compensations_owed.set(await orders.count_owed_compensations(db))
            metrics.oldest_unprocessed_webhook_age.set(await inbox.oldest_unprocessed_age(db))


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
