"""Each table has one definition (SQLAlchemy) and one type in code; they agree."""

from __future__ import annotations

from dataclasses import fields

import pytest
from sqlalchemy import Table

from app.orders.order import Order
from app.orders.tables import orders
from app.outbox.event import OutboxEvent
from app.outbox.tables import outbox_events
from app.refunds.refund import Refund
from app.refunds.tables import refunds


@pytest.mark.parametrize(
    ("table", "kind"), [(orders, Order), (outbox_events, OutboxEvent), (refunds, Refund)]
)
def test_a_rows_type_has_a_field_per_column_of_its_table(table: Table, kind: type) -> None:
    read_with_it = {"refunds"} if kind is Order else set()  # listed from its own table
    names = [f.name for f in fields(kind) if f.name not in read_with_it]
    assert names == [column.key for column in table.c]
