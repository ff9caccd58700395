"""portone strings as text

Revision ID: 2ef6d356fae0
Revises: 20ad9a4e0b43
Create Date: 2026-11-27 01:48:50.426984
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2ef6d356fae0"
down_revision: str | None = "20ad9a4e0b43"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column(
        "order_events",
        "portone_status",
        existing_type=sa.VARCHAR(length=40),
        type_=sa.Text(),
        existing_nullable=True,
    )
    op.alter_column(
        "orders",
        "portone_status",
        existing_type=sa.VARCHAR(length=40),
        type_=sa.Text(),
        existing_nullable=True,
    )
    op.alter_column(
        "orders",
        "va_bank",
        existing_type=sa.VARCHAR(length=40),
        type_=sa.Text(),
        existing_nullable=True,
    )
    op.alter_column(
        "orders",
        "va_account_number",
        existing_type=sa.VARCHAR(length=64),
        type_=sa.Text(),
        existing_nullable=True,
    )
    op.alter_column(
        "orders",
        "va_remittee_name",
        existing_type=sa.VARCHAR(length=200),
        type_=sa.Text(),
        existing_nullable=True,
    )


def downgrade() -> None:
    op.alter_column(
        "orders",
        "va_remittee_name",
        existing_type=sa.Text(),
        type_=sa.VARCHAR(length=200),
        existing_nullable=True,
    )
    op.alter_column(
        "orders",
        "va_account_number",
        existing_type=sa.Text(),
        type_=sa.VARCHAR(length=64),
        existing_nullable=True,
    )
    op.alter_column(
        "orders",
        "va_bank",
        existing_type=sa.Text(),
        type_=sa.VARCHAR(length=40),
        existing_nullable=True,
    )
    op.alter_column(
        "orders",
        "portone_status",
        existing_type=sa.Text(),
        type_=sa.VARCHAR(length=40),
        existing_nullable=True,
    )
    op.alter_column(
        "order_events",
        "portone_status",
        existing_type=sa.Text(),
        type_=sa.VARCHAR(length=40),
        existing_nullable=True,
    )
