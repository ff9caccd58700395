"""webhook deliveries and reconciler checkpoints

Revision ID: 4931f3a18d80
Revises: 3e1c2ee588cf
Create Date: 2026-11-27 00:35:43.737256
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4931f3a18d80"
down_revision: str | None = "3e1c2ee588cf"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reconciler_checkpoints",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("changed_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_reconciler_checkpoints")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("webhook_id", sa.String(length=255), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=True),
        sa.Column("payment_id", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("webhook_id", name=op.f("uq_webhook_deliveries_webhook_id")),
    )
    op.create_index(
        op.f("ix_webhook_deliveries_payment_id"), "webhook_deliveries", ["payment_id"], unique=False
    )
    op.create_index(
        op.f("ix_webhook_deliveries_status"), "webhook_deliveries", ["status"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_deliveries_status"), table_name="webhook_deliveries")
    op.drop_index(op.f("ix_webhook_deliveries_payment_id"), table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("reconciler_checkpoints")
