"""order_events is the orders' history

Revision ID: 5b7e0c1d9a42
Revises: 2ef6d356fae0
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5b7e0c1d9a42"
down_revision: str | None = "2ef6d356fae0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RENAMES = [
    ("TABLE order_events", "order_history"),
    ("SEQUENCE order_events_id_seq", "order_history_id_seq"),
    ("INDEX ix_order_events_order_id", "ix_order_history_order_id"),
]
CONSTRAINTS = [
    ("pk_order_events", "pk_order_history"),
    ("fk_order_events_order_id_orders", "fk_order_history_order_id_orders"),
]


def upgrade() -> None:
    for old, new in RENAMES:
        op.execute(f"ALTER {old} RENAME TO {new}")
    for old, new in CONSTRAINTS:
        op.execute(f"ALTER TABLE order_history RENAME CONSTRAINT {old} TO {new}")


def downgrade() -> None:
    for old, new in CONSTRAINTS:
        op.execute(f"ALTER TABLE order_history RENAME CONSTRAINT {new} TO {old}")
    for old, new in reversed(RENAMES):
        kind, _, name = old.partition(" ")
        op.execute(f"ALTER {kind} {new} RENAME TO {name}")
