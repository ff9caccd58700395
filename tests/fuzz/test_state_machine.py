"""The order state machine against a reference model, one snapshot at a time.

Random sequences of PortOne snapshots, fresh, reordered and repeated, with random
`statusChangedAt`, go through the real apply path (`services.sync.apply`) against
Postgres. After every step the order must agree with a small model written from the
contract's transition table in docs/contract.md (plus the extension the service
implements: a PARTIAL_CANCELLED snapshot on a PENDING or AWAITING_DEPOSIT order is
verified like a PAID and moves it to PARTIALLY_REFUNDED): never a regression or an
illegal transition, stale snapshots ignored, one history row per observation, one
transition row per change, one compensation per rejected payment.

`FUZZ_SEED=<n>` runs other sequences, `FUZZ_MAX_EXAMPLES=<n>` more of them.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
import pytest
import respx
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text

from app.main import create_app
from app.payments.sync import Source
from app.portone.models import Payment
from app.wiring import Services
from tests.helpers import INTERNAL, make_settings, mocked_portone
from tests.portone_payloads import iso, payment_body

pytestmark = pytest.mark.slow

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "60"))
SEED = int(os.environ["FUZZ_SEED"]) if os.environ.get("FUZZ_SEED") else None

AMOUNT = 10_000
T0 = datetime(2026, 11, 27, tzinfo=UTC)

PENDING, AWAITING, PAID = "PENDING", "AWAITING_DEPOSIT", "PAID"
PARTIALLY_REFUNDED, REFUNDED = "PARTIALLY_REFUNDED", "REFUNDED"
CANCELLED, REJECTED = "CANCELLED", "REJECTED"

UNSETTLED = frozenset({PENDING, AWAITING})
VERIFIED = frozenset({"PAID", "VIRTUAL_ACCOUNT_ISSUED", "PARTIAL_CANCELLED"})

# The contract's transitions, (order status, PortOne status) -> next status, for a payment that
# passes every check; anything not listed leaves the order as it is.
TRANSITIONS = {
    (PENDING, "VIRTUAL_ACCOUNT_ISSUED"): AWAITING,
    (PENDING, "PAID"): PAID,
    (AWAITING, "PAID"): PAID,
    (PENDING, "CANCELLED"): CANCELLED,
    (AWAITING, "CANCELLED"): CANCELLED,
    (PAID, "PARTIAL_CANCELLED"): PARTIALLY_REFUNDED,
    (PAID, "CANCELLED"): REFUNDED,
    (PARTIALLY_REFUNDED, "CANCELLED"): REFUNDED,
    # The extension: a PAID never seen, already partly cancelled.
    (PENDING, "PARTIAL_CANCELLED"): PARTIALLY_REFUNDED,
    (AWAITING, "PARTIAL_CANCELLED"): PARTIALLY_REFUNDED,
}
LEGAL = {(before, after) for (before, _), after in TRANSITIONS.items()} | {
    (before, REJECTED) for before in UNSETTLED | {CANCELLED}
}

# How a snapshot can fail verification, as payment_body() arguments.
FLAWS: dict[str, dict[str, Any]] = {
    "none": {},
    "STORE_MISMATCH": {"store_id": "store-someone-else"},
    "CURRENCY_MISMATCH": {"currency": "USD"},
    "AMOUNT_MISMATCH": {"total": AMOUNT // 100},
    "TEST_CHANNEL": {"channel_type": "TEST"},
}
STATUSES = (
    "READY",
    "PAY_PENDING",
    "VIRTUAL_ACCOUNT_ISSUED",
    "PAID",
    "FAILED",
    "PARTIAL_CANCELLED",
    "CANCELLED",
)


@dataclass(frozen=True)
class Snapshot:
    status: str
    flaw: str
    # Seconds after T0: few values, so ties, reorders and repeats are common. None: PortOne
    # left `statusChangedAt` out (the tolerant model allows it), so it cannot be stale.
    at: int | None
    cancelled: int

    def body(self, payment_id: str) -> dict[str, Any]:
        body = payment_body(
            payment_id,
            status=self.status,
            status_changed_at=T0 + timedelta(seconds=self.at or 0),
            cancelled=self.cancelled,
            virtual_account=self.status == "VIRTUAL_ACCOUNT_ISSUED",
            **FLAWS[self.flaw],
        )
        if self.at is None:
            del body["statusChangedAt"]
        return body


snapshots = st.builds(
    Snapshot,
    status=st.sampled_from(STATUSES),
    flaw=st.just("none") | st.sampled_from(list(FLAWS)),
    at=st.integers(-1, 12).map(lambda n: None if n < 0 else n),
    cancelled=st.sampled_from([0, 0, 3_000, AMOUNT]),
)


@dataclass
class Model:
    """What docs/contract.md says the order is after each snapshot."""

    status: str = PENDING
    applied_at: int | None = None
    refunded: int = 0
    events: list[tuple[str, str]] = field(default_factory=list)

    def observe(self, snapshot: Snapshot) -> None:
        before = self.status
        at = snapshot.at
        if at is not None and self.applied_at is not None and at < self.applied_at:
            self.events.append((before, before))  # stale: recorded, ignored
            return
        if at is not None:
            self.applied_at = at
        self.refunded = snapshot.cancelled  # refundedAmount mirrors amount.cancelled
        if snapshot.status in VERIFIED and before == CANCELLED:
            self.status = REJECTED  # money for an order that takes none (ORDER_CLOSED)
        elif snapshot.status in VERIFIED and before in UNSETTLED and snapshot.flaw != "none":
            self.status = REJECTED
        else:
            self.status = TRANSITIONS.get((before, snapshot.status), before)
        self.events.append((before, self.status))


class OrderMachine(RuleBasedStateMachine):
    runner: ClassVar[asyncio.Runner]
    app: ClassVar[FastAPI]
    client: ClassVar[httpx.AsyncClient]

    def __init__(self) -> None:
        super().__init__()
        response = self._run(
            self.client.post(
                "/orders", json={"orderName": "state machine", "amount": AMOUNT}, headers=INTERNAL
            )
        )
        assert response.status_code == 201, response.text
        self.order_id: str = response.json()["orderId"]
        self.payment_id: str = response.json()["paymentId"]
        self.model = Model()
        self.seen: list[Snapshot] = []

    def _run(self, awaitable: Any) -> Any:
        return self.runner.run(awaitable)

    def _apply(self, snapshot: Snapshot, source: Source) -> None:
        services: Services = self.app.state.services
        payment = Payment.model_validate(snapshot.body(self.payment_id))
        self._run(services.sync.apply(self.payment_id, payment, source))
        self.model.observe(snapshot)
        self.seen.append(snapshot)

    @rule(
        snapshot=snapshots,
        source=st.sampled_from([Source.COMPLETE, Source.WEBHOOK, Source.RECONCILE]),
    )
    def observe(self, snapshot: Snapshot, source: Source) -> None:
        self._apply(snapshot, source)

    @precondition(lambda self: bool(self.seen))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """A snapshot seen before, delivered again (a retried webhook, a late reconciler)."""
        self._apply(data.draw(st.sampled_from(self.seen)), Source.WEBHOOK)

    @invariant()
    def agrees_with_the_model(self) -> None:
        order, events = self._run(self._read())
        trace = f"snapshots: {self.seen}\norder: {order}\nevents: {events}"
        assert order["status"] == self.model.status, trace
        assert order["refunded_amount"] == self.model.refunded, trace
        observed = [
            (e["from_status"], e["to_status"]) for e in events if e["source"] != "compensation"
        ]
        # One event per observation, in order; so one transition row per change.
        assert observed == self.model.events, trace
        for before, after in observed:
            assert before == after or (before, after) in LEGAL, f"{before} -> {after}\n{trace}"
        compensations = [e for e in events if e["source"] == "compensation"]
        assert len(compensations) == (1 if self.model.status == REJECTED else 0), trace

    async def _read(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        services: Services = self.app.state.services
        async with services.database.engine.connect() as connection:
            order = (
                (
                    await connection.execute(
                        text("SELECT status, refunded_amount FROM orders WHERE id = :id"),
                        {"id": self.order_id},
                    )
                )
                .mappings()
                .one()
            )
            events = (
                (
                    await connection.execute(
                        text(
                            "SELECT source, from_status, to_status FROM order_history"
                            " WHERE order_id = :id ORDER BY id"
                        ),
                        {"id": self.order_id},
                    )
                )
                .mappings()
                .all()
            )
        return dict(order), [dict(e) for e in events]


def _portone_accepts_compensation(router: respx.MockRouter) -> None:
    cancellation = {
        "status": "SUCCEEDED",
        "id": "cancel-1",
        "totalAmount": AMOUNT,
        "taxFreeAmount": 0,
        "vatAmount": 0,
        "reason": "rejected",
        "requestedAt": iso(T0),
        "cancelledAt": iso(T0),
    }
    router.post(path__regex=r"^/payments/[^/]+/cancel$").respond(
        200, json={"cancellation": cancellation}
    )
    router.post(path__regex=r"^/payments/[^/]+/virtual-account/close$").respond(
        200, json={"closedAt": iso(T0)}
    )


def test_snapshots_move_orders_only_as_spec_allows(database_url: str) -> None:
    app = create_app(make_settings(database_url))
    lifespan = app.router.lifespan_context(app)
    with (
        asyncio.Runner() as runner,
        mocked_portone() as router,
    ):
        _portone_accepts_compensation(router)
        runner.run(lifespan.__aenter__())
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://service.test"
        )
        OrderMachine.runner, OrderMachine.app, OrderMachine.client = runner, app, client
        machine: type[OrderMachine] = OrderMachine
        if SEED is not None:
            machine = hypothesis_seed(SEED)(type("SeededOrderMachine", (OrderMachine,), {}))
        try:
            run_state_machine_as_test(
                machine,
                settings=settings(
                    max_examples=MAX_EXAMPLES,
                    stateful_step_count=20,
                    deadline=None,
                    database=None,
                    derandomize=SEED is None,
                    print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow],
                ),
            )
        finally:
            runner.run(client.aclose())
            runner.run(lifespan.__aexit__(None, None, None))
