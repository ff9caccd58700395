"""The order rules on their own: the contract's transition table, the checks, and staleness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.orders.status import OrderStatus
from app.payments.rules import Decision, OrderTerms, Policy, Rejection, decide, verify_payment
from app.portone.models import Payment, PaymentStatus
from tests.portone_payloads import STORE_ID, iso, payment_body

S = OrderStatus
P = PaymentStatus

LIVE_ONLY = Policy(STORE_ID, accept_test_payments=False)
TEST_ACCEPTED = Policy(STORE_ID, accept_test_payments=True)
APPLIED_AT = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)

# docs/contract.md, "Order statuses, and how PortOne's payment moves them": every listed move.
# Any (order status, PortOne status) pair not here leaves the order where it is.
CONTRACT_TRANSITIONS: dict[tuple[OrderStatus, str], OrderStatus] = {
    (S.PENDING, P.VIRTUAL_ACCOUNT_ISSUED): S.AWAITING_DEPOSIT,
    (S.PENDING, P.PAID): S.PAID,
    (S.AWAITING_DEPOSIT, P.PAID): S.PAID,
    (S.PENDING, P.CANCELLED): S.CANCELLED,
    (S.AWAITING_DEPOSIT, P.CANCELLED): S.CANCELLED,
    (S.PAID, P.PARTIAL_CANCELLED): S.PARTIALLY_REFUNDED,
    (S.PAID, P.CANCELLED): S.REFUNDED,
    (S.PARTIALLY_REFUNDED, P.CANCELLED): S.REFUNDED,
    # Beyond the contract's table: a PAID we never saw, already partly cancelled, is verified like a
    # PAID and lands where PortOne is, so the reconciler can agree with PortOne.
    (S.PENDING, P.PARTIAL_CANCELLED): S.PARTIALLY_REFUNDED,
    (S.AWAITING_DEPOSIT, P.PARTIAL_CANCELLED): S.PARTIALLY_REFUNDED,
}

PORTONE_STATUSES = [*PaymentStatus, "SOMETHING_NEW"]
TABLE = [
    pytest.param(
        order_status,
        portone_status,
        CONTRACT_TRANSITIONS.get((order_status, portone_status), order_status),
        id=f"{order_status}+{portone_status}",
    )
    for order_status in OrderStatus
    for portone_status in PORTONE_STATUSES
]

NEVER_MOVING = ["READY", "PAY_PENDING", "FAILED", "SOMETHING_NEW"]


def payment(**overrides: Any) -> Payment:
    overrides.setdefault("status_changed_at", APPLIED_AT + timedelta(minutes=1))
    return Payment.model_validate(payment_body("pay-rules-1", **overrides))


def terms(
    status: str = S.PENDING,
    *,
    amount: int = 10_000,
    currency: str = "KRW",
    status_changed_at: datetime | None = APPLIED_AT,
    updated_at: datetime | None = None,
) -> OrderTerms:
    return OrderTerms(amount, currency, status, status_changed_at, updated_at)


def settled_amounts(portone_status: str) -> dict[str, Any]:
    if portone_status == P.PARTIAL_CANCELLED:
        return {"cancelled": 3_000}
    if portone_status == P.CANCELLED:
        return {"cancelled": 10_000}
    return {}


@pytest.mark.parametrize(("order_status", "portone_status", "expected"), TABLE)
def test_valid_snapshot_moves_order_as_the_transition_table_says(
    order_status: OrderStatus, portone_status: str, expected: OrderStatus
) -> None:
    snapshot = payment(status=portone_status, **settled_amounts(portone_status))

    decision = decide(snapshot, terms(order_status), LIVE_ONLY)

    assert decision.to_status == expected
    assert decision.rejection is None
    assert not decision.stale


@pytest.mark.parametrize("order_status", [S.PENDING, S.AWAITING_DEPOSIT])
@pytest.mark.parametrize("portone_status", NEVER_MOVING)
def test_unfinished_failed_or_unknown_payment_never_moves_an_unsettled_order(
    order_status: OrderStatus, portone_status: str
) -> None:
    # Even a snapshot that would fail every check: these statuses are not verified.
    snapshot = payment(
        status=portone_status, total=1, currency="USD", store_id="other", channel_type="TEST"
    )

    decision = decide(snapshot, terms(order_status), LIVE_ONLY)

    assert decision.to_status == order_status
    assert decision.rejection is None


REJECTIONS = [
    pytest.param({"store_id": "store-of-someone-else"}, Rejection.STORE_MISMATCH, id="store"),
    pytest.param({"currency": "USD"}, Rejection.CURRENCY_MISMATCH, id="currency"),
    pytest.param({"total": 100}, Rejection.AMOUNT_MISMATCH, id="amount-lower"),
    pytest.param({"total": 10_001}, Rejection.AMOUNT_MISMATCH, id="amount-higher"),
    pytest.param({"channel_type": "TEST"}, Rejection.TEST_CHANNEL, id="test-channel"),
    pytest.param({"channel": None}, Rejection.TEST_CHANNEL, id="no-channel"),
    pytest.param({"channel": {"type": "SOMETHING_NEW"}}, Rejection.TEST_CHANNEL, id="odd-channel"),
]


@pytest.mark.parametrize(("tampered", "reason"), REJECTIONS)
def test_payment_failing_a_check_is_rejected_with_its_reason(
    tampered: dict[str, Any], reason: Rejection
) -> None:
    rejection = verify_payment(payment(**tampered), terms(), LIVE_ONLY)

    assert rejection is not None
    assert rejection.rejection == reason
    assert rejection.to_status == S.REJECTED
    assert rejection.detail


@pytest.mark.parametrize(("tampered", "reason"), REJECTIONS)
@pytest.mark.parametrize("portone_status", [P.PAID, P.VIRTUAL_ACCOUNT_ISSUED])
@pytest.mark.parametrize("order_status", [S.PENDING, S.AWAITING_DEPOSIT])
def test_invalid_paid_or_issued_payment_rejects_an_unsettled_order(
    order_status: OrderStatus, portone_status: str, tampered: dict[str, Any], reason: Rejection
) -> None:
    decision = decide(payment(status=portone_status, **tampered), terms(order_status), LIVE_ONLY)

    assert decision.to_status == S.REJECTED
    assert decision.rejection == reason


def test_matching_payment_passes_every_check() -> None:
    assert verify_payment(payment(), terms(), LIVE_ONLY) is None


def test_amount_is_compared_in_the_orders_currency_minor_units() -> None:
    order = terms(amount=1_999, currency="USD")

    assert verify_payment(payment(total=1_999, currency="USD"), order, LIVE_ONLY) is None
    rejection = verify_payment(payment(total=19_99_00, currency="USD"), order, LIVE_ONLY)
    assert rejection is not None
    assert rejection.rejection == Rejection.AMOUNT_MISMATCH


def test_discounted_payment_is_not_an_amount_mismatch() -> None:
    discounted = payment(total=10_000, paid=8_500)

    assert verify_payment(discounted, terms(), LIVE_ONLY) is None
    assert decide(discounted, terms(), LIVE_ONLY).to_status == S.PAID


def test_test_channel_is_rejected_unless_test_payments_are_accepted() -> None:
    on_test_channel = payment(channel_type="TEST")

    rejected = decide(on_test_channel, terms(), LIVE_ONLY)
    accepted = decide(on_test_channel, terms(), TEST_ACCEPTED)

    assert rejected.to_status == S.REJECTED
    assert rejected.rejection == Rejection.TEST_CHANNEL
    assert accepted.to_status == S.PAID
    assert accepted.rejection is None


def test_accepting_test_payments_does_not_waive_the_other_checks() -> None:
    decision = decide(payment(channel_type="TEST", total=100), terms(), TEST_ACCEPTED)

    assert decision.rejection == Rejection.AMOUNT_MISMATCH


@pytest.mark.parametrize("order_status", [S.PAID, S.PARTIALLY_REFUNDED, S.REFUNDED])
def test_settled_order_is_not_rejected_by_a_later_mismatching_paid_snapshot(
    order_status: OrderStatus,
) -> None:
    decision = decide(payment(total=100), terms(order_status), LIVE_ONLY)

    assert decision.to_status == order_status
    assert decision.rejection is None


def test_rejected_order_stays_rejected_whatever_portone_says() -> None:
    for status in PORTONE_STATUSES:
        decision = decide(payment(status=status), terms(S.REJECTED), LIVE_ONLY)
        assert decision.to_status == S.REJECTED


def test_cancellation_of_an_unsettled_order_needs_no_verification() -> None:
    cancelled = payment(status=P.CANCELLED, total=100, store_id="other", channel_type="TEST")

    assert decide(cancelled, terms(S.PENDING), LIVE_ONLY).to_status == S.CANCELLED


@pytest.mark.parametrize(
    ("order_status", "older_status"),
    [
        (S.CANCELLED, P.PAID),
        (S.CANCELLED, P.VIRTUAL_ACCOUNT_ISSUED),
        (S.PAID, P.VIRTUAL_ACCOUNT_ISSUED),
        (S.REFUNDED, P.PAID),
        (S.PARTIALLY_REFUNDED, P.PAID),
        (S.AWAITING_DEPOSIT, P.CANCELLED),
        (S.PAID, P.CANCELLED),
    ],
)
def test_snapshot_older_than_the_one_applied_is_ignored(
    order_status: OrderStatus, older_status: str
) -> None:
    older = payment(status=older_status, status_changed_at=APPLIED_AT - timedelta(seconds=1))

    decision = decide(older, terms(order_status), LIVE_ONLY)

    assert decision == Decision(order_status, decision.detail, rejection=None, stale=True)


def test_older_snapshot_that_fails_the_checks_does_not_reject() -> None:
    older = payment(total=100, status_changed_at=APPLIED_AT - timedelta(minutes=5))

    decision = decide(older, terms(S.AWAITING_DEPOSIT), LIVE_ONLY)

    assert decision.to_status == S.AWAITING_DEPOSIT
    assert decision.rejection is None
    assert decision.stale


def test_snapshot_as_new_as_the_one_applied_is_applied() -> None:
    same_time = payment(status=P.PAID, status_changed_at=APPLIED_AT)

    decision = decide(same_time, terms(S.AWAITING_DEPOSIT), LIVE_ONLY)

    assert decision.to_status == S.PAID
    assert not decision.stale


@pytest.mark.parametrize(
    ("updated", "stale"),
    [(timedelta(seconds=-1), True), (timedelta(0), False), (timedelta(seconds=1), False)],
    ids=["older", "equal", "newer"],
)
def test_at_an_equal_status_change_the_older_update_is_ignored(
    updated: timedelta, stale: bool
) -> None:
    # A dispute changes the payment, not its status: only updatedAt tells the reads apart.
    applied_update = APPLIED_AT + timedelta(minutes=5)
    snapshot = payment(
        status=P.PAID, status_changed_at=APPLIED_AT, updatedAt=iso(applied_update + updated)
    )

    decision = decide(snapshot, terms(S.PAID, updated_at=applied_update), LIVE_ONLY)

    assert decision.stale == stale
    assert decision.to_status == S.PAID


def test_first_snapshot_applies_when_nothing_was_applied_before() -> None:
    old = payment(status=P.PAID, status_changed_at=datetime(2020, 1, 1, tzinfo=UTC))

    decision = decide(old, terms(S.PENDING, status_changed_at=None), LIVE_ONLY)

    assert decision.to_status == S.PAID
