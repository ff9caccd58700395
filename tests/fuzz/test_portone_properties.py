"""Every payment PortOne could return, through `POST /payments/complete`.

Bodies come from PortOne's own OpenAPI (each status variant), nudged towards the order
(so valid payments are common) and mutated the ways PortOne changes without notice:
unknown statuses and method types, extra fields, missing optional parts, other stores,
amounts, currencies and channel types. The service must never answer 5xx (but 503
PORTONE_UNAVAILABLE when the body cannot be read), and the order must end where
docs/contract.md says: PAID if and only if PortOne says PAID and every check passes.

`FUZZ_SEED=<n>` runs other examples, `FUZZ_MAX_EXAMPLES=<n>` more of them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import respx
from hypothesis import HealthCheck, event, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from pydantic import ValidationError

from app.portone.models import Payment
from tests.fuzz.portone_schemas import VARIANTS, Json, payment_strategy
from tests.helpers import INTERNAL
from tests.portone_payloads import STORE_ID

pytestmark = pytest.mark.slow

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "150"))
SEED = int(os.environ["FUZZ_SEED"]) if os.environ.get("FUZZ_SEED") else None

VERIFIED = {"PAID", "VIRTUAL_ACCOUNT_ISSUED", "PARTIAL_CANCELLED"}
ORDER_CURRENCIES = ("KRW", "USD", "JPY")
JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
IDENTIFIERS = st.from_regex(r"[A-Z][A-Z_]{1,30}", fullmatch=True)


@dataclass(frozen=True)
class Scenario:
    amount: int
    currency: str
    payment: Json  # without its id: the order's paymentId is set when it exists


def _set(body: Json, path: tuple[str, ...], value: Any) -> None:
    target = body
    for key in path[:-1]:
        child = target.get(key)
        if not isinstance(child, dict):
            return
        target = child
    target[path[-1]] = value


def _one_in(draw: st.DrawFn, n: int) -> bool:
    """True about once in `n` draws (Hypothesis favours 0, the simplest value, so not 0)."""
    return draw(st.integers(0, n - 1)) == n // 2


def _without_negatives(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_negatives(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_negatives(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return min(-value, 2**63 - 1)
    return value


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    amount = draw(st.integers(1, 10**6) | st.integers(1, 10**12))
    currency = draw(st.sampled_from(ORDER_CURRENCIES))
    status = draw(st.sampled_from(["PAID", *sorted(set(VARIANTS) - {"PAID"})]))  # PAID first
    body: Json = dict(draw(payment_strategy(status)))
    body = json.loads(json.dumps(body))  # private copies of the nested parts
    if not _one_in(draw, 10):
        # PortOne's schema allows any int64; real amounts are not negative (rarely kept).
        body = _without_negatives(body)

    # Towards the order, mostly: each check is met on its own, so every failure shows up.
    if not _one_in(draw, 5):
        body["storeId"] = STORE_ID
    elif draw(st.booleans()):
        body["storeId"] = draw(st.sampled_from([STORE_ID.upper(), f" {STORE_ID}", STORE_ID[:-1]]))
    if not _one_in(draw, 5):
        body["currency"] = currency
    elif draw(st.booleans()):
        body["currency"] = draw(st.sampled_from([currency.lower(), "EUR", "XXX", ""]))
    if not _one_in(draw, 5):
        _set(body, ("amount", "total"), amount)
        if draw(st.booleans()):  # a card discount: paid less than the total is no mismatch
            _set(body, ("amount", "paid"), draw(st.integers(0, amount)))
    elif draw(st.booleans()):
        _set(body, ("amount", "total"), draw(st.sampled_from([amount + 1, amount - 1, -amount])))
    if not _one_in(draw, 5):
        _set(body, ("channel", "type"), "LIVE")
    elif draw(st.booleans()):
        _set(body, ("channel", "type"), draw(st.sampled_from(["TEST", "live", "SANDBOX"])))

    # What PortOne may start sending without notice.
    if _one_in(draw, 10):
        body["status"] = draw(IDENTIFIERS.filter(lambda s: s not in VARIANTS))
    if _one_in(draw, 6):
        method = draw(st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=3))
        body["method"] = {**method, "type": draw(IDENTIFIERS.map(lambda s: f"PaymentMethod{s}"))}
    if _one_in(draw, 4):
        for part in ("channel", "method", "amount", None):
            target = body if part is None else body.get(part)
            if not isinstance(target, dict):
                continue
            extras = draw(
                st.dictionaries(st.text(min_size=1, max_size=12), JSON_VALUES, max_size=3)
            )
            for key, value in extras.items():
                target.setdefault(key, value)
    if _one_in(draw, 10):
        body.pop(draw(st.sampled_from(["channel", "method", "statusChangedAt", "storeId"])), None)
    # A body the service cannot read at all.
    if _one_in(draw, 20):
        broken = draw(st.sampled_from(["amount", "currency", "status"]))
        if draw(st.booleans()):
            body.pop(broken, None)
        else:
            body[broken] = draw(st.sampled_from([None, 1.5, [], {"total": "ten"}]))
    return Scenario(amount, currency, body)


def readable(body: Json) -> bool:
    try:
        Payment.model_validate(body)
    except ValidationError:
        return False
    return True


def expected_status(scenario: Scenario, body: Json) -> str:
    """Where the contract's transitions take a PENDING order on this snapshot."""
    status = body["status"]
    if status in VERIFIED:
        channel = body.get("channel")
        amount = body.get("amount") or {}
        matches = (
            body.get("storeId") == STORE_ID
            and body.get("currency") == scenario.currency
            and amount.get("total") == scenario.amount
            and isinstance(channel, dict)
            and channel.get("type") == "LIVE"
        )
        if not matches:
            return "REJECTED"
        return {
            "PAID": "PAID",
            "VIRTUAL_ACCOUNT_ISSUED": "AWAITING_DEPOSIT",
            # A PAID we never saw, already partly cancelled: verified like a PAID.
            "PARTIAL_CANCELLED": "PARTIALLY_REFUNDED",
        }[status]
    if status == "CANCELLED":
        return "CANCELLED"
    return "PENDING"  # READY, PAY_PENDING, FAILED and statuses PortOne has not invented yet


class PortOneDouble:
    """GET /payments/{id} answers the body under test; cancel and close succeed."""

    def __init__(self, router: respx.MockRouter) -> None:
        self.bodies: dict[str, bytes] = {}
        self.cancels: dict[str, int] = {}
        self.closes: dict[str, int] = {}
        router.get(path__regex=r"^/payments/(?P<payment_id>[^/]+)$").mock(side_effect=self._get)
        router.post(path__regex=r"^/payments/(?P<payment_id>[^/]+)/cancel$").mock(
            side_effect=self._cancel
        )
        router.post(path__regex=r"^/payments/(?P<payment_id>[^/]+)/virtual-account/close$").mock(
            side_effect=self._close
        )

    def _get(self, request: httpx.Request, payment_id: str) -> httpx.Response:
        body = self.bodies.get(payment_id)
        if body is None:
            return httpx.Response(404, json={"type": "PAYMENT_NOT_FOUND", "message": "none"})
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    def _cancel(self, request: httpx.Request, payment_id: str) -> httpx.Response:
        self.cancels[payment_id] = self.cancels.get(payment_id, 0) + 1
        sent = json.loads(request.content)
        cancellation = {
            "status": "SUCCEEDED",
            "id": f"cancel-{payment_id}",
            "totalAmount": sent.get("amount", sent.get("currentCancellableAmount", 0)),
            "taxFreeAmount": 0,
            "vatAmount": 0,
            "reason": sent.get("reason", ""),
            "requestedAt": "2026-11-27T00:00:00Z",
            "cancelledAt": "2026-11-27T00:00:00Z",
        }
        return httpx.Response(200, json={"cancellation": cancellation})

    def _close(self, request: httpx.Request, payment_id: str) -> httpx.Response:
        self.closes[payment_id] = self.closes.get(payment_id, 0) + 1
        return httpx.Response(200, json={"closedAt": "2026-11-27T00:00:00Z"})


def _derandomized(test: Any) -> Any:
    configured = settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=SEED is None,
        print_blob=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )(test)
    return configured if SEED is None else hypothesis_seed(SEED)(configured)


@pytest.fixture
def double(portone: respx.MockRouter) -> PortOneDouble:
    """One per test run, shared by all its examples (each has its own paymentId)."""
    return PortOneDouble(portone)


@_derandomized
@given(scenario=scenarios())
async def test_an_order_is_paid_iff_portone_says_paid_and_every_check_passes(
    client: httpx.AsyncClient, double: PortOneDouble, scenario: Scenario
) -> None:
    created = await client.post(
        "/orders",
        json={"orderName": "fuzzed", "amount": scenario.amount, "currency": scenario.currency},
        headers=INTERNAL,
    )
    assert created.status_code == 201, created.text
    order = created.json()
    payment_id = order["paymentId"]
    body = {**scenario.payment, "id": payment_id}
    double.bodies[payment_id] = json.dumps(body).encode()

    response = await client.post("/payments/complete", json={"paymentId": payment_id})
    after = (await client.get(f"/orders/{order['orderId']}", headers=INTERNAL)).json()
    trace = f"{response.status_code} {response.text[:500]}\norder: {after}"

    event("unreadable" if not readable(body) else f"expected {expected_status(scenario, body)}")
    if not readable(body):
        assert response.status_code == 503, trace
        assert response.json()["code"] == "PORTONE_UNAVAILABLE", trace
        assert after["status"] == "PENDING", trace
        return
    assert response.status_code < 500, trace
    expected = expected_status(scenario, body)
    assert (after["status"] == "PAID") == (body["status"] == "PAID" and expected == "PAID"), trace
    assert after["status"] == expected, trace
    # refundedAmount mirrors PortOne's amount.cancelled.
    assert after["refundedAmount"] == body["amount"].get("cancelled", 0), trace

    problem = response.json()
    if expected in ("PAID", "AWAITING_DEPOSIT"):
        assert response.status_code == 200, trace
        assert problem["status"] == expected, trace
    elif expected == "REJECTED":
        assert response.status_code == 409, trace
        assert problem["code"] == "PAYMENT_REJECTED", trace
        assert problem["reason"] == after["rejectionReason"], trace
        # Compensated once, the way its PortOne status calls for (a cancel of nothing left
        # may be skipped).
        cancels, closes = double.cancels.get(payment_id, 0), double.closes.get(payment_id, 0)
        if body["status"] == "VIRTUAL_ACCOUNT_ISSUED":
            assert (cancels, closes) == (0, 1), trace
        else:
            left = body["amount"]["total"] - body["amount"].get("cancelled", 0)
            assert closes == 0, trace
            assert cancels <= 1, trace
            if left > 0:
                assert cancels == 1, trace
    else:
        assert response.status_code == 409, trace
        assert problem["code"] == "PAYMENT_NOT_PAID", trace
        assert problem["portoneStatus"] == body["status"], trace
    if expected != "REJECTED":
        assert payment_id not in double.cancels, trace
        assert payment_id not in double.closes, trace
