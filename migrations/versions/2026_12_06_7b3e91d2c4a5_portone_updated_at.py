"""orders remember the PortOne updatedAt of the snapshot applied, to break statusChangedAt ties

Revision ID: 7b3e91d2c4a5
Revises: e5f0a3c8b912
Create Date: 2026-12-06 16:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7b3e91d2c4a5"
down_revision: str | None = "e5f0a3c8b912"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "orders", sa.Column("portone_updated_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("orders", "portone_updated_at")
