"""The PortOne adapter on its own: wire format, retries, and the errors it raises."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import respx

from app.portone import client as portone_client
from app.portone.client import PortOneClient, idempotency_header, new_http_client
from app.portone.errors import (
    PaymentNotFound,
    PortOneApiError,
    PortOneCredentialsRejected,
    PortOneUnavailable,
)
from app.portone.models import PaymentStatus
from tests.portone_payloads import STORE_ID, payment_body

PAYMENT_ID = "pay-client-1"
KEY = "refund-rfd_01JD0000000000000000000000"


@pytest.fixture
async def client(portone: respx.MockRouter) -> AsyncIterator[PortOneClient]:
    async with new_http_client("https://portone.test", "secret") as http:
        yield PortOneClient(http, store_id=STORE_ID)


def cancellation_body(total_amount: int) -> dict[str, Any]:
    return {
        "cancellation": {
            "status": "SUCCEEDED",
            "id": "cancel-1",
            "totalAmount": total_amount,
            "taxFreeAmount": 0,
            "vatAmount": 0,
            "reason": "amount mismatch",
            "requestedAt": "2026-11-26T10:00:00Z",
            "cancelledAt": "2026-11-26T10:00:01Z",
        }
    }


def sent_json(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


async def test_requests_carry_the_portone_secret_as_authorization(
    client: PortOneClient, portone: respx.MockRouter
) -> None:
    route = portone.get(f"/payments/{PAYMENT_ID}").respond(200, json=payment_body(PAYMENT_ID))

    await client.get_payment(PAYMENT_ID)

    request = route.calls.last.request
    headers = request.headers
    assert request.url.params["storeId"] == STORE_ID
    assert headers["Authorization"] == "PortOne secret"
    assert headers["Accept"] == "application/json"
    # Only encodings httpx decodes: a transport's own offer (br, zstd) would go undecoded.
    assert headers["Accept-Encoding"] == "gzip, deflate"


async def test_a_gzipped_answer_is_read(client: PortOneClient, portone: respx.MockRouter) -> None:
    body = gzip.compress(json.dumps(payment_body(PAYMENT_ID)).encode())
    portone.get(f"/payments/{PAYMENT_ID}").respond(
        200, content=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )

    assert (await client.get_payment(PAYMENT_ID)).id == PAYMENT_ID


@pytest.mark.parametrize("payment_id", ["a/b", "?#", "결제-0001", "%2F", "a b", "a.", "..."])
async def test_payment_id_is_sent_as_one_encoded_path_segment(
    client: PortOneClient, portone: respx.MockRouter, payment_id: str
) -> None:
    route = portone.get(path__startswith="/payments").respond(200, json=payment_body(payment_id))

    payment = await client.get_payment(payment_id)

    url = route.calls.last.request.url
    path, _, _ = url.raw_path.decode("ascii").partition("?")
    segments = path.split("/")
    assert segments[:2] == ["", "payments"]
    assert len(segments) == 3, url.raw_path
    assert unquote(segments[2]) == payment_id
    assert dict(url.params) == {"storeId": STORE_ID}
    assert payment.id == payment_id


@pytest.mark.parametrize("payment_id", [".", ".."])
async def test_a_dot_segment_payment_id_is_never_sent(
    client: PortOneClient, portone: respx.MockRouter, payment_id: str
) -> None:
    route = portone.route()

    with pytest.raises(ValueError, match="path segment"):
        await client.get_payment(payment_id)

    assert not route.called


async def test_server_error_then_success_is_retried_to_success(
    client: PortOneClient, portone: respx.MockRouter
) -> None:
    route = portone.get(f"/payments/{PAYMENT_ID}").mock(
        side_effect=[httpx.Response(500), httpx.Response(200, json=payment_body(PAYMENT_ID))]
    )

    payment = await client.get_payment(PAYMENT_ID)

    assert payment.status == PaymentStatus.PAID
    assert route.call_count == 2


async def test_rate_limited_on_every_attempt_is_unavailable(
    client: PortOneClient, portone: respx.MockRouter
) -> None:
    route = portone.get(f"/payments/{PAYMENT_ID}").respond(429, headers={"Retry-After": "7"})

    with pytest.raises(PortOneUnavailable) as raised:
        await client.get_payment(PAYMENT_ID)

    assert route.call_count == 3
    assert raised.value.retry_after == 7


async def test_server_error_on_every_attempt_is_unavailable(
    client: PortOneClient, portone: respx.MockRouter
) -> None:
    route = portone.get(f"/payments/{PAYMENT_ID}").respond(503)

    with pytest.raises(PortOneUnavailable):
        await client.get_payment(PAYMENT_ID)

    assert route.call_count == 3


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ReadTimeout])
async def test_network_failure_is_retried_then_unavailable(
    client: PortOneClient, portone: respx.MockRouter, error: type[httpx.TransportError]
) -> None:
    route = portone.get(f"/payments/{PAYMENT_ID}").mock(side_effect=error)

    with pytest.raises(PortOneUnavailable):
        await client.get_payment(PAYMENT_ID)

    assert route.call_count == 3


async def test_network_failure_then_success_is_retried_to_success(
    client: PortOneClient, portone: respx.MockRouter
) -> None:
    route = portone.get(f"/payments/{PAYMENT_ID}").mock(
        side_effect=[httpx.ReadTimeout, httpx.Response(200, json=payment_body(PAYMENT_ID))]
    )

    payment = await client.get_payment(PAYMENT_ID)

    assert payment.id == PAYMENT_ID
    assert route.call_count == 2


async def test_unknown_payment_raises_payment_not_found(
    client: PortOneClient, portone: respx.MockRouter
) -> None:
    route = portone.get(f"/payments/{PAYMENT_ID}").respond(
        404, json={"type": "PAYMENT_NOT_FOUND", "message": "결제 건이 존재하지 않습니다."}
    )

    with pytest.raises(PaymentNotFound) as raised:
        await client.get_payment(PAYMENT_ID)

    assert raised.value.status_code == 404
    assert raised.value.type == "PAYMENT_NOT_FOUND"
    assert route.call_count == 1


async def test_other_portone_errors_raise_an_api_error_without_retry(
    client: PortOneClient, portone: respx.MockRouter
) -> None:
    route = portone.get(f"/payments/{PAYMENT_ID}").respond(
        400, json={"type": "INVALID_REQUEST", "message": "bad"}
    )

    with pytest.raises(PortOneApiError) as raised:
        await client.get_payment(PAYMENT_ID)

    assert not isinstance(raised.value, PaymentNotFound)
    assert raised.value.type == "INVALID_REQUEST"
    assert route.call_count == 1


@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_credentials_raise_without_retry(
    client: PortOneClient, portone: respx.MockRouter, status: int
) -> None:
    route = portone.get(f"/payments/{PAYMENT_ID}").respond(
        status, json={"type": "UNAUTHORIZED", "message": "invalid secret"}
    )

    with pytest.raises(PortOneCredentialsRejected):
        await client.get_payment(PAYMENT_ID)

    assert route.call_count == 1


async def test_success_with_a_body_that_is_not_json_is_unavailable(
    client: PortOneClient, portone: respx.MockRouter
) -> None:
    portone.get(f"/payments/{PAYMENT_ID}").respond(
        200, text="<html>gateway</html>", content_type="text/html"
    )

    with pytest.raises(PortOneUnavailable):
        await client.get_payment(PAYMENT_ID)


async def test_payment_without_amount_is_unavailable(
    client: PortOneClient, portone: respx.MockRouter
) -> None:
    body = payment_body(PAYMENT_ID)
    del body["amount"]
    portone.get(f"/payments/{PAYMENT_ID}").respond(200, json=body)

    with pytest.raises(PortOneUnavailable):
        await client.get_payment(PAYMENT_ID)


async def test_payment_with_unknown_fields_status_method_and_no_channel_parses(
    client: PortOneClient, portone: respx.MockRouter
) -> None:
    body = payment_body(
        PAYMENT_ID,
        status="SOMETHING_NEW",
        method={"type": "PaymentMethodTeleportation", "planet": "Mars"},
        brandNewField={"nested": [1, 2, 3]},
    )
    body["amount"]["somethingElse"] = 5
    del body["channel"]
    portone.get(f"/payments/{PAYMENT_ID}").respond(200, json=body)

    payment = await client.get_payment(PAYMENT_ID)

    assert payment.status == "SOMETHING_NEW"
    assert payment.method is not None
    assert payment.method.type == "PaymentMethodTeleportation"
    assert not payment.method.is_virtual_account
    assert payment.channel is None
    assert payment.amount.total == 10_000


async def test_cancel_sends_store_reason_and_current_cancellable_amount(
    client: PortOneClient, portone: respx.MockRouter
) -> None:
    route = portone.post(f"/payments/{PAYMENT_ID}/cancel").respond(
        200, json=cancellation_body(10_000)
    )

    cancellation = await client.cancel_payment(
        PAYMENT_ID,
        reason="amount mismatch",
        current_cancellable_amount=10_000,
        idempotency_key=KEY,
    )

    assert sent_json(route) == {
        "storeId": STORE_ID,
        "reason": "amount mismatch",
        "currentCancellableAmount": 10_000,
    }
    assert route.calls.last.request.headers["Authorization"] == "PortOne secret"
    assert route.calls.last.request.headers["Idempotency-Key"] == f'"{KEY}"'
    assert cancellation.status == "SUCCEEDED"
    assert cancellation.total_amount == 10_000


async def test_partial_cancel_sends_the_amount(
    client: PortOneClient, portone: respx.MockRouter
) -> None:
    route = portone.post(f"/payments/{PAYMENT_ID}/cancel").respond(
        200, json=cancellation_body(3_000)
    )

    await client.cancel_payment(
        PAYMENT_ID,
        reason="partial refund",
        current_cancellable_amount=10_000,
        amount=3_000,
        idempotency_key=KEY,
    )

    assert sent_json(route) == {
        "storeId": STORE_ID,
        "reason": "partial refund",
        "currentCancellableAmount": 10_000,
        "amount": 3_000,
    }


async def test_cancel_is_not_retried_on_server_error(
    client: PortOneClient, portone: respx.MockRouter
) -> None:
    route = portone.post(f"/payments/{PAYMENT_ID}/cancel").respond(500)

    with pytest.raises(PortOneUnavailable):
        await client.cancel_payment(
            PAYMENT_ID, reason="r", current_cancellable_amount=10_000, idempotency_key=KEY
        )

    assert route.call_count == 1


async def test_cancel_is_not_retried_on_timeout(
    client: PortOneClient, portone: respx.MockRouter
) -> None:
    route = portone.post(f"/payments/{PAYMENT_ID}/cancel").mock(side_effect=httpx.ReadTimeout)

    with pytest.raises(PortOneUnavailable):
        await client.cancel_payment(
            PAYMENT_ID, reason="r", current_cancellable_amount=10_000, idempotency_key=KEY
        )

    assert route.call_count == 1


@pytest.mark.parametrize(
    "write",
    [
        lambda client: client.cancel_payment(
            PAYMENT_ID, reason="r", current_cancellable_amount=10_000, idempotency_key=KEY
        ),
        lambda client: client.close_virtual_account(PAYMENT_ID, idempotency_key=KEY),
        lambda client: client.pre_register(
            PAYMENT_ID, total_amount=10_000, currency="KRW", idempotency_key=KEY
        ),
    ],
    ids=["cancel", "close", "pre-register"],
)
async def test_every_write_carries_its_idempotency_key_and_an_outstanding_one_is_retryable(
    client: PortOneClient, portone: respx.MockRouter, write: Any
) -> None:
    outstanding = {"type": "IDEMPOTENCY_OUTSTANDING_REQUEST", "message": "처리 중"}
    route = portone.post(url__startswith=f"https://portone.test/payments/{PAYMENT_ID}/").respond(
        409, json=outstanding
    )

    with pytest.raises(PortOneUnavailable):
        await write(client)

    assert route.calls.last.request.headers["Idempotency-Key"] == f'"{KEY}"'


@pytest.mark.parametrize(
    "key", ["short", "x" * 257, 'with "quote" inside-x', "한국어-열여섯-글자-이상의-키"]
)
def test_a_key_portone_would_refuse_is_never_sent(key: str) -> None:
    with pytest.raises(ValueError, match="Idempotency-Key"):
        idempotency_header(key)


async def test_list_payments_sends_options_as_json_in_request_body_parameter(
    client: PortOneClient, portone: respx.MockRouter
) -> None:
    options: dict[str, Any] = {
        "page": {"number": 0, "size": 100},
        "filter": {"storeId": STORE_ID, "timestampType": "STATUS_CHANGED_AT"},
    }
    route = portone.get("/payments").respond(
        200,
        json={
            "items": [payment_body("pay-a"), payment_body("pay-b", status="CANCELLED")],
            "page": {"number": 0, "size": 100, "totalCount": 2},
        },
    )

    page = await client.list_payments(options)

    request = route.calls.last.request
    assert request.url.path == "/payments"
    assert set(request.url.params.keys()) == {"requestBody"}
    assert json.loads(request.url.params["requestBody"]) == options
    assert not request.content
    assert [p.id for p in page.items] == ["pay-a", "pay-b"]
    assert page.page.total_count == 2


class SlowFailingTransport(httpx.AsyncBaseTransport):
    """Every attempt takes `seconds` and gets no answer."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        await asyncio.sleep(self.seconds)
        raise httpx.ReadTimeout("read timed out", request=request)


def failing_client(transport: SlowFailingTransport) -> PortOneClient:
    return PortOneClient(
        new_http_client("https://portone.test", "secret", transport), store_id=STORE_ID
    )


async def test_the_first_attempt_counts_against_the_retry_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(portone_client, "READ_BUDGET_SECONDS", 0.2)
    transport = SlowFailingTransport(0.3)  # the first attempt alone outlasts the budget

    with pytest.raises(PortOneUnavailable, match="timed out"):
        await failing_client(transport).get_payment(PAYMENT_ID)

    assert transport.calls == 1


async def test_retries_share_the_budget_left_by_the_first_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(portone_client, "READ_BUDGET_SECONDS", 10.0)
    transport = SlowFailingTransport(0.01)

    with pytest.raises(PortOneUnavailable, match="timed out"):
        await failing_client(transport).get_payment(PAYMENT_ID)

    assert transport.calls == 3
