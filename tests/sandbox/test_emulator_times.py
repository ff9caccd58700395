"""The emulator's times: each change is a later snapshot, as PortOne writes times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.sandbox import emulator as emulator_module
from app.sandbox import payments as payments_module
from app.sandbox.emulator import Emulator
from app.sandbox.payments import EmulatedPayment

AT = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)


def test_changes_within_one_millisecond_are_told_apart_by_updated_at(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for module in (emulator_module, payments_module):
        monkeypatch.setattr(module, "utc_now", lambda: AT)
    paid = EmulatedPayment(
        id="pay-1",
        store_id="store-1",
        order_name="Coffee",
        total=1_000,
        currency="KRW",
        method="CARD",
        channel_type="LIVE",
        status="PAID",
        status_changed_at=AT,
        updated_at=AT,
        paid_at=AT,
    )
    emulator = Emulator("store-1", [paid])
    before = paid.body()

    emulator.dispute("pay-1", "UNRESOLVED", "not received")
    disputed = paid.body()
    emulator.dispute("pay-1", "RESOLVED", "not received")
    resolved = paid.body()

    # A dispute changes the payment, not its status: only updatedAt tells the snapshots
    # apart, and PortOne writes it to the millisecond.
    assert before["statusChangedAt"] == disputed["statusChangedAt"] == resolved["statusChangedAt"]
    assert before["updatedAt"] < disputed["updatedAt"] < resolved["updatedAt"]
