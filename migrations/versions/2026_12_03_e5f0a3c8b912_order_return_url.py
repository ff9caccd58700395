"""orders remember where the redirect flow lands the customer

Revision ID: e5f0a3c8b912
Revises: c41e9b2a7d55
Create Date: 2026-12-03 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e5f0a3c8b912"
down_revision: str | None = "c41e9b2a7d55"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("return_url", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("orders", "return_url")
