"""The official `portone-server-sdk` reads everything the emulator produces.

The SDK brings its own httpx clients, so the sandbox app is served over real HTTP by
uvicorn in a thread; the webhooks are captured in process, where the sender posts them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from portone_server_sdk import PaymentClient
from portone_server_sdk.common import PageInput
from portone_server_sdk.errors import (
    AlreadyPaidError,
    CancellableAmountConsistencyBrokenError,
    InformationMismatchError,
    InvalidPaymentTokenError,
    PaymentAlreadyCancelledError,
    PaymentNotFoundError,
    UnauthorizedError,
)
from portone_server_sdk.payment import (
    CancelledPayment,
    FailedPayment,
    PaidPayment,
    PartialCancelledPayment,
    Payment,
    PaymentFilterInput,
    PaymentMethodCard,
    PaymentMethodVirtualAccount,
    ReadyPayment,
    SucceededPaymentCancellation,
    VirtualAccountIssuedPayment,
)
from portone_server_sdk.webhook import (
    WebhookTransactionCancelledCancelled,
    WebhookTransactionCancelledPartialCancelled,
    WebhookTransactionFailed,
    WebhookTransactionPaid,
    WebhookTransactionVirtualAccountIssued,
    WebhookVerificationError,
    verify,
)

from app.config import Settings
from app.main import create_app
from app.sandbox import IN_PROCESS
from tests.fuzz.portone_schemas import REFERENCE
from tests.helpers import INTERNAL, webhook_sender

# The official SDK against the emulator: a contract check, not the inner loop.
pytestmark = pytest.mark.slow

AMOUNT = 10_000
PARTIAL = 3_000


@dataclass
class Shop:
    """The shop's backend, its customer and PortOne's console, over HTTP."""

    http: httpx.Client

    def order(self) -> str:
        response = self.http.post(
            "/orders", json={"orderName": "Waffle trainer 2", "amount": AMOUNT}, headers=INTERNAL
        )
        assert response.status_code == 201, response.text
        payment_id: str = response.json()["paymentId"]
        return payment_id

    def act(
        self, payment_id: str, action: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        response = self.http.post(f"/sandbox/payments/{payment_id}/{action}", json=body)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def authorized(self, payment_id: str, amount: int = AMOUNT) -> str:
        """The customer pays on a channel with manual confirmation: the payment's token."""
        answer = self.act(payment_id, "pay", {"confirm": "MANUAL", "amount": amount})
        token: str = answer["paymentToken"]
        return token


@pytest.fixture
def served(settings: Settings, db: asyncpg.Connection) -> Iterator[str]:
    """The sandbox app on 127.0.0.1, with its lifespan, until the test ends."""
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=0, lifespan="on", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def shop(served: str) -> Iterator[Shop]:
    with httpx.Client(base_url=served, timeout=30) as http:
        yield Shop(http)


@contextmanager
def payment_client(secret: str, served: str) -> Iterator[PaymentClient]:
    client = PaymentClient(secret=secret, base_url=f"{served}/sandbox/portone")
    try:
        yield client
    finally:
        # The SDK never closes the connections its own httpx client keeps alive.
        client._sync_client.close()


@pytest.fixture
def sdk(served: str, settings: Settings) -> Iterator[PaymentClient]:
    with payment_client(settings.api_secret, served) as client:
        yield client


def card_paid(shop: Shop, sdk: PaymentClient, payment_id: str) -> None:
    shop.act(payment_id, "pay", {"method": "CARD"})


def account_issued(shop: Shop, sdk: PaymentClient, payment_id: str) -> None:
    shop.act(payment_id, "pay", {"method": "VIRTUAL_ACCOUNT"})


def deposited(shop: Shop, sdk: PaymentClient, payment_id: str) -> None:
    account_issued(shop, sdk, payment_id)
    shop.act(payment_id, "deposit")


def failed(shop: Shop, sdk: PaymentClient, payment_id: str) -> None:
    shop.act(payment_id, "fail", {"reason": "card declined"})


def partly_cancelled(shop: Shop, sdk: PaymentClient, payment_id: str) -> None:
    card_paid(shop, sdk, payment_id)
    shop.act(payment_id, "cancel", {"amount": PARTIAL})


def cancelled_in_console(shop: Shop, sdk: PaymentClient, payment_id: str) -> None:
    card_paid(shop, sdk, payment_id)
    shop.act(payment_id, "cancel")


def cancelled_by_api(shop: Shop, sdk: PaymentClient, payment_id: str) -> None:
    card_paid(shop, sdk, payment_id)
    response = sdk.cancel_payment(
        payment_id=payment_id, reason="out of stock", current_cancellable_amount=AMOUNT
    )
    assert isinstance(response.cancellation, SucceededPaymentCancellation)
    assert response.cancellation.total_amount == AMOUNT


def account_closed(shop: Shop, sdk: PaymentClient, payment_id: str) -> None:
    account_issued(shop, sdk, payment_id)
    sdk.close_virtual_account(payment_id=payment_id)


def paid_on_test_channel(shop: Shop, sdk: PaymentClient, payment_id: str) -> None:
    shop.act(payment_id, "pay", {"method": "CARD", "channelType": "TEST"})


@dataclass(frozen=True)
class State:
    reach: Callable[[Shop, PaymentClient, str], None]
    sdk_class: type[Any]
    method: type[Any]
    paid: int
    cancelled: int


STATES = {
    "card-paid": State(card_paid, PaidPayment, PaymentMethodCard, AMOUNT, 0),
    "account-issued": State(
        account_issued, VirtualAccountIssuedPayment, PaymentMethodVirtualAccount, 0, 0
    ),
    "deposit-paid": State(deposited, PaidPayment, PaymentMethodVirtualAccount, AMOUNT, 0),
    "failed": State(failed, FailedPayment, PaymentMethodCard, 0, 0),
    "partial-cancelled": State(
        partly_cancelled, PartialCancelledPayment, PaymentMethodCard, AMOUNT, PARTIAL
    ),
    "console-cancelled": State(
        cancelled_in_console, CancelledPayment, PaymentMethodCard, AMOUNT, AMOUNT
    ),
    "api-cancelled": State(cancelled_by_api, CancelledPayment, PaymentMethodCard, AMOUNT, AMOUNT),
    "account-closed": State(account_closed, CancelledPayment, PaymentMethodVirtualAccount, 0, 0),
    "test-channel-paid": State(paid_on_test_channel, PaidPayment, PaymentMethodCard, AMOUNT, 0),
}


@pytest.mark.parametrize("state", STATES.values(), ids=STATES.keys())
def test_sdk_reads_each_emulated_state_as_its_class_with_its_amounts(
    shop: Shop, sdk: PaymentClient, settings: Settings, state: State
) -> None:
    payment_id = shop.order()
    state.reach(shop, sdk, payment_id)

    payment = sdk.get_payment(payment_id=payment_id)

    assert isinstance(payment, state.sdk_class)
    assert payment.id == payment_id
    assert payment.store_id == settings.store_id
    assert payment.currency == "KRW"
    assert isinstance(payment.method, state.method)
    assert (payment.amount.total, payment.amount.paid, payment.amount.cancelled) == (
        AMOUNT,
        state.paid,
        state.cancelled,
    )


def test_sdk_reads_the_failure_of_a_failed_payment(shop: Shop, sdk: PaymentClient) -> None:
    payment_id = shop.order()
    failed(shop, sdk, payment_id)

    payment = sdk.get_payment(payment_id=payment_id)

    assert isinstance(payment, FailedPayment)
    assert payment.failure.reason == "card declined"
    assert payment.order_name == "Waffle trainer 2"


def test_sdk_reads_the_issued_virtual_account(shop: Shop, sdk: PaymentClient) -> None:
    payment_id = shop.order()
    account_issued(shop, sdk, payment_id)

    payment = sdk.get_payment(payment_id=payment_id)

    assert isinstance(payment, VirtualAccountIssuedPayment)
    assert isinstance(payment.method, PaymentMethodVirtualAccount)
    assert payment.method.bank == "SHINHAN"
    assert payment.method.account_number
    assert payment.method.expired_at


@pytest.mark.parametrize(("channel", "expected"), [("LIVE", "LIVE"), ("TEST", "TEST")])
def test_sdk_reads_the_channel_type_the_customer_paid_on(
    shop: Shop, sdk: PaymentClient, channel: str, expected: str
) -> None:
    payment_id = shop.order()
    shop.act(payment_id, "pay", {"method": "CARD", "channelType": channel})

    payment = sdk.get_payment(payment_id=payment_id)

    assert isinstance(payment, PaidPayment)
    assert payment.channel.type == expected


def test_sdk_pages_through_the_payment_list(shop: Shop, sdk: PaymentClient) -> None:
    paid = [shop.order() for _ in range(3)]
    for payment_id in paid:
        card_paid(shop, sdk, payment_id)

    first = sdk.get_payments(page=PageInput(number=0, size=2))
    second = sdk.get_payments(page=PageInput(number=1, size=2))

    assert first.page.total_count == second.page.total_count == 3
    assert (len(first.items), len(second.items)) == (2, 1)
    assert all(isinstance(item, PaidPayment) for item in first.items + second.items)
    assert {_id(item) for item in first.items + second.items} == set(paid)


def test_sdk_filters_the_payment_list_by_status_change_time(shop: Shop, sdk: PaymentClient) -> None:
    before, after = shop.order(), shop.order()
    card_paid(shop, sdk, before)
    time.sleep(0.01)
    boundary = datetime.now(UTC)
    time.sleep(0.01)
    cancelled_in_console(shop, sdk, after)
    time.sleep(0.01)
    until = datetime.now(UTC)

    changed = sdk.get_payments(
        filter=PaymentFilterInput(
            timestamp_type="STATUS_CHANGED_AT", from_=_rfc3339(boundary), until=_rfc3339(until)
        )
    )

    assert [_id(item) for item in changed.items] == [after]
    assert isinstance(changed.items[0], CancelledPayment)
    assert changed.page.total_count == 1


def test_sdk_confirms_a_manually_confirmed_payment_once(shop: Shop, sdk: PaymentClient) -> None:
    payment_id = shop.order()
    token = shop.authorized(payment_id)
    assert isinstance(sdk.get_payment(payment_id=payment_id), ReadyPayment)

    summary = sdk.confirm_payment(
        payment_id=payment_id,
        payment_token=token,
        total_amount=AMOUNT,
        currency="KRW",
        is_test=False,
    )

    paid = sdk.get_payment(payment_id=payment_id)
    assert isinstance(paid, PaidPayment)
    assert summary.pg_tx_id == paid.transaction_id
    with pytest.raises(AlreadyPaidError):
        sdk.confirm_payment(payment_id=payment_id, payment_token=token, total_amount=AMOUNT)


def test_sdk_raises_portones_refusals_of_a_confirmation_and_nothing_is_charged(
    shop: Shop, sdk: PaymentClient
) -> None:
    payment_id = shop.order()
    token = shop.authorized(payment_id, amount=AMOUNT // 100)

    with pytest.raises(InformationMismatchError):
        sdk.confirm_payment(payment_id=payment_id, payment_token=token, total_amount=AMOUNT)
    with pytest.raises(InvalidPaymentTokenError):
        sdk.confirm_payment(payment_id=payment_id, payment_token="ptkn_forged")

    assert isinstance(sdk.get_payment(payment_id=payment_id), ReadyPayment)


def test_sdk_raises_payment_not_found_for_an_unknown_payment(sdk: PaymentClient) -> None:
    with pytest.raises(PaymentNotFoundError):
        sdk.get_payment(payment_id="pay_unknown")


def test_sdk_raises_unauthorized_for_a_wrong_secret(shop: Shop, served: str) -> None:
    payment_id = shop.order()
    with (
        payment_client("not-the-secret", served) as stranger,
        pytest.raises(UnauthorizedError),
    ):
        stranger.get_payment(payment_id=payment_id)


def test_cancel_with_a_stale_cancellable_amount_is_refused_and_cancels_nothing(
    shop: Shop, sdk: PaymentClient
) -> None:
    payment_id = shop.order()
    partly_cancelled(shop, sdk, payment_id)

    with pytest.raises(CancellableAmountConsistencyBrokenError):
        sdk.cancel_payment(payment_id=payment_id, reason="retry", current_cancellable_amount=AMOUNT)

    payment = sdk.get_payment(payment_id=payment_id)
    assert isinstance(payment, PartialCancelledPayment)
    assert payment.amount.cancelled == PARTIAL


def test_cancelling_a_cancelled_payment_raises_already_cancelled(
    shop: Shop, sdk: PaymentClient
) -> None:
    payment_id = shop.order()
    cancelled_by_api(shop, sdk, payment_id)

    with pytest.raises(PaymentAlreadyCancelledError):
        sdk.cancel_payment(payment_id=payment_id, reason="twice")

    payment = sdk.get_payment(payment_id=payment_id)
    assert isinstance(payment, CancelledPayment)
    assert payment.amount.cancelled == AMOUNT


class Recorder(httpx.AsyncBaseTransport):
    """Forwards every request to the app and keeps a copy."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.requests.append(request)
        return await self.inner.handle_async_request(request)


@pytest.fixture
async def sent_webhooks(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[list[httpx.Request]]:
    """Every webhook the emulator's sender posts, as the service received it."""
    recorder = Recorder(httpx.ASGITransport(app=app))
    async with httpx.AsyncClient(transport=recorder, base_url=IN_PROCESS, timeout=30) as client:
        monkeypatch.setattr(app.state.sandbox.sender, "_client", client)
        yield recorder.requests


async def _order(http: httpx.AsyncClient) -> str:
    response = await http.post(
        "/orders", json={"orderName": "W", "amount": AMOUNT}, headers=INTERNAL
    )
    assert response.status_code == 201, response.text
    payment_id: str = response.json()["paymentId"]
    return payment_id


async def test_sdk_verifies_every_webhook_the_emulator_sends_in_both_versions(
    app: FastAPI, sent_webhooks: list[httpx.Request], settings: Settings
) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as http:
        card, account, declined = [await _order(http) for _ in range(3)]
        for path, body in [
            (f"{card}/pay", {"method": "CARD"}),
            (f"{card}/cancel", {"amount": PARTIAL}),
            (f"{card}/cancel", None),
            (f"{account}/pay", {"method": "VIRTUAL_ACCOUNT"}),
            (f"{account}/deposit", None),
            (f"{declined}/fail", None),
        ]:
            response = await http.post(f"/sandbox/payments/{path}", json=body)
            assert response.status_code == 200, response.text
    await webhook_sender(app).drain()
    secret = settings.portone_webhook_secrets[0].get_secret_value()

    verified = [verify(secret, r.content.decode(), r.headers) for r in sent_webhooks]

    current = [(type(w), asdict(w.data)["payment_id"]) for w in verified if not isinstance(w, dict)]
    legacy = [(w["status"], w["payment_id"]) for w in verified if isinstance(w, dict)]
    assert current == [
        (WebhookTransactionPaid, card),
        (WebhookTransactionCancelledPartialCancelled, card),
        (WebhookTransactionCancelledCancelled, card),
        (WebhookTransactionVirtualAccountIssued, account),
        (WebhookTransactionPaid, account),
        (WebhookTransactionFailed, declined),
    ]
    assert legacy == [
        ("Paid", card),
        ("PartialCancelled", card),
        ("Cancelled", card),
        ("VirtualAccountIssued", account),
        ("Paid", account),
        ("Failed", declined),
    ]
    assert (webhook_sender(app).delivered, webhook_sender(app).abandoned) == (12, 0)


async def test_sdk_refuses_an_emulator_webhook_whose_body_was_altered(
    app: FastAPI, sent_webhooks: list[httpx.Request], settings: Settings
) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as http:
        await http.post(f"/sandbox/payments/{await _order(http)}/pay", json={})
    await webhook_sender(app).drain()
    secret = settings.portone_webhook_secrets[0].get_secret_value()
    request = sent_webhooks[0]

    with pytest.raises(WebhookVerificationError):
        verify(secret, request.content.decode().replace("Paid", "Failed"), request.headers)


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    """PortOne's reference, its discriminated unions made checkable by JSON Schema."""
    spec: dict[str, Any] = json.loads(REFERENCE.read_text(encoding="utf-8"))
    return {"components": _discriminated(spec["components"])}


def _discriminated(node: Any) -> Any:
    # OpenAPI picks a oneOf branch by its discriminator; JSON Schema's oneOf would try
    # every branch, and PortOne's branches do not exclude each other.
    if isinstance(node, list):
        return [_discriminated(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _discriminated(value) for key, value in node.items()}
    discriminator = node.get("discriminator")
    if "oneOf" in node and isinstance(discriminator, dict) and "mapping" in discriminator:
        name, mapping = discriminator["propertyName"], discriminator["mapping"]
        node.pop("oneOf")
        node["required"] = [name]
        node["properties"] = {name: {"enum": list(mapping)}}
        node["allOf"] = [
            {"if": {"properties": {name: {"const": value}}}, "then": {"$ref": target}}
            for value, target in mapping.items()
        ]
    return node


def _errors(openapi: dict[str, Any], schema: str, body: Any) -> list[str]:
    jsonschema = pytest.importorskip(
        "jsonschema", reason="jsonschema is not installed in the virtualenv"
    )
    validator = jsonschema.Draft7Validator({"$ref": f"#/components/schemas/{schema}", **openapi})
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(body)]


@pytest.mark.parametrize("state", STATES.values(), ids=STATES.keys())
def test_emulator_payment_bodies_are_valid_against_the_reference(
    shop: Shop, sdk: PaymentClient, settings: Settings, openapi: dict[str, Any], state: State
) -> None:
    payment_id = shop.order()
    state.reach(shop, sdk, payment_id)
    auth = {"Authorization": f"PortOne {settings.api_secret}"}

    body = shop.http.get(f"/sandbox/portone/payments/{payment_id}", headers=auth).json()
    listed = shop.http.get("/sandbox/portone/payments", headers=auth).json()

    assert _errors(openapi, "Payment", body) == []
    assert _errors(openapi, "GetPaymentsResponse", listed) == []


def test_emulator_confirmation_answers_are_valid_against_the_reference(
    shop: Shop, settings: Settings, openapi: dict[str, Any]
) -> None:
    auth = {"Authorization": f"PortOne {settings.api_secret}"}
    payment_id = shop.order()
    token = shop.authorized(payment_id)
    path = f"/sandbox/portone/payments/{payment_id}/confirm"

    forged = shop.http.post(path, json={"paymentToken": "ptkn_forged"}, headers=auth)
    confirmed = shop.http.post(path, json={"paymentToken": token}, headers=auth)
    again = shop.http.post(path, json={"paymentToken": token}, headers=auth)

    assert (forged.status_code, confirmed.status_code, again.status_code) == (400, 200, 409)
    assert _errors(openapi, "ConfirmedPaymentSummary", confirmed.json()) == []
    assert _errors(openapi, "ConfirmPaymentError", forged.json()) == []
    assert _errors(openapi, "ConfirmPaymentError", again.json()) == []


def test_emulator_error_bodies_are_valid_against_the_reference(
    shop: Shop, settings: Settings, openapi: dict[str, Any]
) -> None:
    auth = {"Authorization": f"PortOne {settings.api_secret}"}
    missing = shop.http.get("/sandbox/portone/payments/pay_unknown", headers=auth)
    refused = shop.http.get("/sandbox/portone/payments/pay_unknown")

    assert (missing.status_code, refused.status_code) == (404, 401)
    assert _errors(openapi, "GetPaymentError", missing.json()) == []
    assert _errors(openapi, "GetPaymentError", refused.json()) == []


def _id(payment: Payment) -> str:
    assert not isinstance(payment, dict)
    payment_id: str = payment.id
    return payment_id


def _rfc3339(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
