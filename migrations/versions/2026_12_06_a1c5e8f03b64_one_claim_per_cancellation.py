"""a PortOne cancellation belongs to one refund at most

Revision ID: a1c5e8f03b64
Revises: 7b3e91d2c4a5
Create Date: 2026-12-06 16:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "a1c5e8f03b64"
down_revision: str | None = "7b3e91d2c4a5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Fails where two refunds already share a cancellation: that needs a person, not a
    # migration (docs/operations.md, "When money does not come back").
    op.create_unique_constraint("uq_refunds_cancellation_id", "refunds", ["cancellation_id"])


def downgrade() -> None:
    op.drop_constraint("uq_refunds_cancellation_id", "refunds", type_="unique")
