"""Every statement on `sandbox_payments`: the emulator's payments, kept and read back."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, bindparam, func, select
from sqlalchemy.dialects.postgresql import insert

from app.db import Database, Query
from app.sandbox.emulator import Emulator
from app.sandbox.payments import EmulatedPayment
from app.sandbox.tables import sandbox_payments

_state = bindparam("state", type_=sandbox_payments.c.state.type)
KEEP = Query(
    insert(sandbox_payments)
    .values(id=bindparam("payment_id", type_=String), state=_state)
    .on_conflict_do_update(
        index_elements=[sandbox_payments.c.id], set_={"state": _state, "updated_at": func.now()}
    )
)
ALL = Query(select(sandbox_payments.c.id, sandbox_payments.c.state))


class SandboxStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def keep(self, emulator: Emulator, payment_id: str) -> None:
        """Write down what the emulator knows of `payment_id`, after a change."""
        payment = emulator.payments.get(payment_id)
        state: dict[str, Any] = {
            "payment": payment.state() if payment else None,
            "preRegistered": emulator.pre_registered.get(payment_id),
        }
        async with self._database.connect() as db:
            await KEEP.run(db, payment_id=payment_id, state=state)

    async def load(self, emulator: Emulator) -> int:
        """Fill `emulator` with what was kept; how many payments there were."""
        async with self._database.connect() as db:
            rows = await ALL.rows(db)
        for row in rows:
            state = row["state"]
            if state.get("payment"):
                emulator.payments[row["id"]] = EmulatedPayment.restored(state["payment"])
            if state.get("preRegistered"):
                amount, currency = state["preRegistered"]
                emulator.pre_registered[row["id"]] = (amount, currency)
        return len(emulator.payments)
