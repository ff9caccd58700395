"""money to the end: cancellations followed until PortOne settles them, disputes, a
reconciler that resumes where it stopped

Revision ID: 8c2d4f6a1b37
Revises: 5b7e0c1d9a42
Create Date: 2026-12-03 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "8c2d4f6a1b37"
down_revision: str | None = "5b7e0c1d9a42"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column(
            "disputes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("orders", sa.Column("compensation_cancellation_id", sa.Text(), nullable=True))
    op.add_column(
        "orders",
        sa.Column("compensation_attempts", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "orders",
        sa.Column("compensation_next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column("orders", sa.Column("reconciled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("refunds", sa.Column("cancellation_id", sa.Text(), nullable=True))
    op.add_column("refunds", sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_refunds_status", "refunds", ["status"], unique=False)
    op.add_column(
        "reconciler_checkpoints",
        sa.Column("resume_from", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "reconciler_checkpoints",
        sa.Column("window_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "reconciler_checkpoints",
        sa.Column("resume_page", sa.Integer(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("reconciler_checkpoints", "resume_page")
    op.drop_column("reconciler_checkpoints", "window_until")
    op.drop_column("reconciler_checkpoints", "resume_from")
    op.drop_index("ix_refunds_status", table_name="refunds")
    op.drop_column("refunds", "settled_at")
    op.drop_column("refunds", "cancellation_id")
    op.drop_column("orders", "reconciled_at")
    op.drop_column("orders", "compensation_next_attempt_at")
    op.drop_column("orders", "compensation_attempts")
    op.drop_column("orders", "compensation_cancellation_id")
    op.drop_column("orders", "disputes")
