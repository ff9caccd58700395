"""refunds and compensation leases

Revision ID: cd26c80417aa
Revises: 4931f3a18d80
Create Date: 2026-11-27 00:40:45.892477
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "cd26c80417aa"
down_revision: str | None = "4931f3a18d80"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "refunds",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("cancellable_amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_code", sa.String(length=40), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_refunds_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
        sa.UniqueConstraint("order_id", "idempotency_key", name=op.f("uq_refunds_order_id")),
    )
    op.create_index(op.f("ix_refunds_order_id"), "refunds", ["order_id"], unique=False)
    op.add_column(
        "orders", sa.Column("compensation_lease_until", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        op.f("ix_orders_compensation_status"), "orders", ["compensation_status"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_orders_compensation_status"), table_name="orders")
    op.drop_column("orders", "compensation_lease_until")
    op.drop_index(op.f("ix_refunds_order_id"), table_name="refunds")
    op.drop_table("refunds")
