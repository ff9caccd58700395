"""orders may expire: expires_at, and the index the reconciler finds them by

Revision ID: d7f2a9c41e08
Revises: a1c5e8f03b64
Create Date: 2026-12-06 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d7f2a9c41e08"
down_revision: str | None = "a1c5e8f03b64"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("expires_at", sa.DateTime(timezone=True)))
    op.create_index(
        "ix_orders_status_expires_at",
        "orders",
        ["status", "expires_at"],
        postgresql_where=sa.text("expires_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_status_expires_at", table_name="orders")
    op.drop_column("orders", "expires_at")
