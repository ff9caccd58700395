"""What the fuzzers found, pinned as plain examples so it stays fixed whatever they draw.

Each case is the shrunk input of a fuzzing failure; the assertion is docs/contract.md's: malformed
input is a 4xx with a code, PortOne's answers never make a 5xx (but 503
PORTONE_UNAVAILABLE for a body the service cannot read), and the OpenAPI declares every
status a route answers with.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import respx

from app.main import create_app
from tests.helpers import INTERNAL, create_order, make_settings
from tests.portone_payloads import payment_body

pytestmark = pytest.mark.slow


def _assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code, response.text


def _assert_no_server_error(response: httpx.Response) -> None:
    """4xx for the caller's mistakes; of 5xx, only a retryable PORTONE_UNAVAILABLE."""
    if response.status_code >= 500:
        _assert_problem(response, 503, "PORTONE_UNAVAILABLE")


# --- the service's own API (test_openapi_fuzz.py) ---------------------------------------


@pytest.mark.parametrize("body", [b"{", b"\x81\x03&", b"not json"], ids=["cut", "binary", "text"])
@pytest.mark.parametrize(
    "path", ["/payments/complete", "/orders", "/orders/ord_missing/refund"], ids=str
)
async def test_a_body_that_is_not_json_is_a_validation_failure(
    client: httpx.AsyncClient, path: str, body: bytes
) -> None:
    headers = {**INTERNAL, "content-type": "application/json"}
    response = await client.post(path, content=body, headers=headers)
    _assert_problem(response, 422, "VALIDATION_FAILED")


@pytest.mark.parametrize(
    "body",
    [
        {"orderName": "a\x00b", "amount": 1},
        {"orderName": "ab", "amount": 1, "metadata": {"note": "a\x00"}},
        {"orderName": "ab", "amount": 1, "metadata": {"a\x00": 1}},
        {"orderName": "ab", "amount": 1, "customer": {"name": "x\x00"}},
    ],
    ids=["orderName", "metadata value", "metadata key", "customer"],
)
async def test_nul_characters_in_an_order_are_never_a_server_error(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    response = await client.post("/orders", json=body, headers=INTERNAL)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["code"] == "VALIDATION_FAILED", response.text


async def test_nul_characters_in_ids_are_never_a_server_error(client: httpx.AsyncClient) -> None:
    completed = await client.post("/payments/complete", json={"paymentId": "pay\x00"})
    assert 400 <= completed.status_code < 500, completed.text
    found = await client.get("/orders/ord%00", headers=INTERNAL)
    assert 400 <= found.status_code < 500, found.text


@pytest.mark.parametrize("value", ["235", "0.5", "2026-11-27"])
async def test_updated_after_must_be_an_rfc3339_time(client: httpx.AsyncClient, value: str) -> None:
    response = await client.get("/orders", params={"updatedAfter": value}, headers=INTERNAL)
    _assert_problem(response, 422, "VALIDATION_FAILED")


# --- PortOne's answers (test_portone_properties.py) -------------------------------------


@pytest.mark.parametrize(
    "payment",
    [
        {"status": "READY", "cancelled": -1},
        {"status": "PAID", "cancelled": -1},
        {"status": "FAILED", "failure": {"reason": "a\x00"}},
        {"store_id": "store\x00"},
        {
            "status": "VIRTUAL_ACCOUNT_ISSUED",
            "virtual_account": True,
            "method": {
                "type": "PaymentMethodVirtualAccount",
                "bank": "SHINHAN",
                "accountNumber": "0",
                "remitteeName": "\x00",
            },
        },
        {"statusChangedAt": "0001-01-01T00:00:00+09:00"},
        {"paidAt": "9999-12-31T23:59:59-09:00"},
    ],
    ids=[
        "negative cancelled",
        "paid, negative cancelled",
        "NUL in failure",
        "NUL in storeId",
        "NUL in virtual account",
        "statusChangedAt before year 1 UTC",
        "paidAt after 9999 UTC",
    ],
)
async def test_no_payment_portone_could_send_is_a_server_error(
    client: httpx.AsyncClient, portone: respx.MockRouter, payment: dict[str, Any]
) -> None:
    order = await create_order(client, amount=10_000)
    payment_id = order["paymentId"]
    portone.get(f"/payments/{payment_id}").respond(200, json=payment_body(payment_id, **payment))
    cancellation = {"status": "SUCCEEDED", "id": "c-1", "totalAmount": 10_000}
    portone.post(f"/payments/{payment_id}/cancel").respond(200, json={"cancellation": cancellation})
    portone.post(f"/payments/{payment_id}/virtual-account/close").respond(
        200, json={"closedAt": "2026-11-27T00:00:00Z"}
    )
    response = await client.post("/payments/complete", json={"paymentId": payment_id})
    _assert_no_server_error(response)
    after = (await client.get(f"/orders/{order['orderId']}", headers=INTERNAL)).json()
    assert after["status"] != "PAID" or payment.get("status", "PAID") == "PAID", after


# --- sandbox mode's OpenAPI (run_against_server.py against a sandbox server) -------------


@pytest.fixture
async def sandbox(database_url: str, db: asyncpg.Connection) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        database_url,
        portone_mode="sandbox",
        portone_api_base_url=None,
        portone_accept_test_payments=None,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as http:
            yield http


@pytest.mark.parametrize(
    ("method", "path", "template", "body"),
    [
        ("GET", "/sandbox/portone/payments/pay_x", "/sandbox/portone/payments/{payment_id}", None),
        ("GET", "/sandbox/portone/payments", "/sandbox/portone/payments", None),
        (
            "POST",
            "/sandbox/portone/payments/pay_x/cancel",
            "/sandbox/portone/payments/{payment_id}/cancel",
            b"{}",
        ),
        ("POST", "/sandbox/payments/pay_x/deposit", "/sandbox/payments/{payment_id}/deposit", None),
        ("POST", "/sandbox/payments/pay_x/cancel", "/sandbox/payments/{payment_id}/cancel", b"{}"),
        ("POST", "/sandbox/payments/pay_x/pay", "/sandbox/payments/{payment_id}/pay", b"{"),
        ("POST", "/sandbox/payments/pay_x/fail", "/sandbox/payments/{payment_id}/fail", b"{"),
    ],
    ids=lambda value: value if isinstance(value, str) and value.startswith("/") else None,
)
async def test_sandbox_routes_declare_what_they_answer(
    sandbox: httpx.AsyncClient, method: str, path: str, template: str, body: bytes | None
) -> None:
    openapi = (await sandbox.get("/openapi.json")).json()
    operation = openapi["paths"].get(template, {}).get(method.lower())
    if operation is None:
        return  # not in the OpenAPI: nothing is promised
    headers = {"content-type": "application/json"} if body is not None else {}
    response = await sandbox.request(method, path, content=body, headers=headers)
    declared = operation["responses"]
    assert str(response.status_code) in declared, (
        f"{method} {template} answered {response.status_code}, declares {sorted(declared)}:"
        f" {response.text[:200]}"
    )
    media_type = response.headers.get("content-type", "").split(";")[0]
    content = declared[str(response.status_code)].get("content", {})
    assert not content or media_type in content, f"{media_type} not in {sorted(content)}"
