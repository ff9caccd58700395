"""What this service copied from PortOne's API reference still says what the reference says."""

from __future__ import annotations

import json

from app.portone.currencies import CURRENCIES
from tests.portone.reference import SCHEMAS


def test_the_currencies_orders_take_are_portones() -> None:
    schemas = json.loads(SCHEMAS.read_text(encoding="utf-8"))["components"]["schemas"]

    assert set(schemas["Currency"]["enum"]) == CURRENCIES
