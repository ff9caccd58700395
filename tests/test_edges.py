"""Trust at the edges, tried as a stranger would: what the public doors reveal, what an
unauthenticated request costs before it is refused, and which URLs the service builds."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import respx
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from app.standard_webhooks import MAX_SIGNATURE_HEADER, MAX_SIGNATURES
from tests.helpers import (
    INTERNAL,
    PAYMENT_RESULT,
    TOKEN,
    complete,
    create_order,
    make_sandbox_settings,
    make_settings,
    portone_returns,
    signed_webhook,
)
from tests.live_server import serving

CUSTOMER = {"id": "cus-7731", "name": "Kim Minji", "email": "minji@example.kr"}
PRIVATE = ("cus-7731", "Kim Minji", "minji@example.kr", "loyalty-tier-gold", "shop.example")


async def private_order(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    return await create_order(
        client,
        customer=CUSTOMER,
        metadata={"tier": "loyalty-tier-gold"},
        returnUrl="https://shop.example/thanks",
        **body,
    )


def assert_reveals_nothing_private(response: httpx.Response) -> None:
    for private in PRIVATE:
        assert private not in response.text, response.text


@pytest.mark.parametrize("virtual_account", [False, True])
async def test_a_completion_answers_the_payment_result_and_nothing_about_the_customer(
    client: httpx.AsyncClient, portone: respx.MockRouter, virtual_account: bool
) -> None:
    order = await private_order(client)
    status = "VIRTUAL_ACCOUNT_ISSUED" if virtual_account else "PAID"
    portone_returns(portone, order["paymentId"], status=status, virtual_account=virtual_account)

    response = await complete(client, order["paymentId"])

    assert response.status_code == 200, response.text
    assert set(response.json()) == PAYMENT_RESULT
    assert response.json()["status"] == ("AWAITING_DEPOSIT" if virtual_account else "PAID")
    assert (response.json()["virtualAccount"] is not None) == virtual_account
    assert_reveals_nothing_private(response)


@pytest.mark.parametrize(
    ("payment", "code"),
    [
        ({"total": 100}, "PAYMENT_REJECTED"),
        ({"status": "FAILED"}, "PAYMENT_NOT_PAID"),
        ({"status": "READY"}, "PAYMENT_NOT_PAID"),
    ],
)
async def test_a_completions_problems_reveal_nothing_about_the_customer(
    client: httpx.AsyncClient, portone: respx.MockRouter, payment: dict[str, Any], code: str
) -> None:
    order = await private_order(client)
    portone_returns(portone, order["paymentId"], **payment)
    portone.post(f"/payments/{order['paymentId']}/cancel").respond(500)

    first = await complete(client, order["paymentId"])
    again = await complete(client, order["paymentId"])  # answered from the stored order

    for response in (first, again):
        assert response.json()["code"] == code
        assert_reveals_nothing_private(response)


async def test_a_return_reveals_nothing_about_the_customer(
    client: httpx.AsyncClient, portone: respx.MockRouter
) -> None:
    order = await create_order(client, customer=CUSTOMER, metadata={"t": "loyalty-tier-gold"})
    portone_returns(portone, order["paymentId"])

    page = await client.get("/payments/return", params={"paymentId": order["paymentId"]})

    assert page.status_code == 200
    assert "PAID" in page.text
    assert_reveals_nothing_private(page)


async def read_until_answered(port: int, request: bytes) -> tuple[bytes, float]:
    """What the server answers to `request` (headers that promise a body never sent), and
    how long it took: a server that reads the body first never answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(request)
    await writer.drain()
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    finally:
        writer.close()
    return head, time.monotonic() - started


@pytest.fixture
def live_base(app: FastAPI) -> Iterator[str]:
    with serving(create_app(app.state.services.settings)) as base:
        yield base


@pytest.mark.parametrize(
    "framing",
    [b"Content-Length: 1000000\r\n\r\n{", b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n"],
    ids=["content-length", "chunked"],
)
@pytest.mark.parametrize("authorization", [b"", b"Authorization: Bearer wrong\r\n"])
async def test_an_internal_request_without_the_token_is_refused_before_its_body_is_read(
    live_base: str, framing: bytes, authorization: bytes
) -> None:
    port = int(live_base.rsplit(":", 1)[1])
    request = (
        b"POST /orders HTTP/1.1\r\nHost: service.test\r\nContent-Type: application/json\r\n"
        + authorization
        + framing
    )

    head, _ = await read_until_answered(port, request)

    assert head.startswith(b"HTTP/1.1 401"), head
    assert b"www-authenticate: Bearer" in head.lower().replace(b"bearer", b"Bearer")


async def test_the_token_is_taken_in_any_case_of_the_bearer_scheme(
    client: httpx.AsyncClient,
) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        response = await client.get("/orders", headers={"Authorization": f"{scheme} {TOKEN}"})
        assert response.status_code == 200, scheme
    for wrong in (TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer  {TOKEN}"):
        response = await client.get("/orders", headers={"Authorization": wrong})
        assert response.status_code == 401, wrong


def test_every_internal_route_is_under_a_path_the_token_guards(app: FastAPI) -> None:
    guarded = {"orders", "order-events"}
    for route in app.openapi()["paths"].items():
        path, operations = route
        for operation in operations.values():
            internal = operation.get("security") == [{"InternalToken": []}]
            assert internal == (path.split("/")[1] in guarded), path


@pytest.mark.parametrize("path", ["/orders/", "/orders/x/", "/healthz/", "/payments/complete/"])
async def test_no_redirect_is_built_from_the_host_the_caller_named(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path, headers={**INTERNAL, "Host": "evil.example"})

    assert response.status_code in (404, 405), response.text
    assert "location" not in response.headers


async def test_forwarded_headers_of_an_untrusted_peer_build_no_url(
    live_base: str,
) -> None:
    port = int(live_base.rsplit(":", 1)[1])
    request = (
        b"GET /orders/ HTTP/1.1\r\nHost: evil.example\r\n"
        b"X-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\nConnection: close\r\n\r\n"
    )

    head, _ = await read_until_answered(port, request)

    assert head.startswith(b"HTTP/1.1 404"), head
    assert b"evil.example" not in head


async def test_readiness_names_its_reason_without_the_drivers_message() -> None:
    settings = make_settings("postgresql+asyncpg://verifier:pw@127.0.0.1:9/nowhere")
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["reason"] == "unreachable"
    for driver_text in ("Errno", "refused", "127.0.0.1", ":9", "nowhere", "Connect call"):
        assert driver_text not in response.text, response.text


async def test_the_docs_keep_the_token_only_while_the_page_is_open(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/docs")

    assert page.status_code == 200
    assert '"persistAuthorization": false' in page.text
    assert '"persistAuthorization": true' not in page.text


def with_signatures(headers: dict[str, str], signatures: list[str]) -> dict[str, str]:
    return headers | {"webhook-signature": " ".join(signatures)}


def junk_signature(n: int) -> str:
    return "v1," + base64.b64encode(n.to_bytes(32, "big")).decode()


async def test_a_webhook_signature_header_over_its_bound_is_refused_before_it_is_parsed(
    client: httpx.AsyncClient, portone: respx.MockRouter
) -> None:
    body, headers = signed_webhook("pay_unknown")
    genuine = headers["webhook-signature"]
    too_many = [junk_signature(n) for n in range(MAX_SIGNATURES)] + [genuine]
    too_long = [genuine + "=" * (MAX_SIGNATURE_HEADER - len(genuine) + 1)]
    twelve_mb = ["v1," + "A" * 12_000_000]

    for signatures in (too_many, too_long, twelve_mb):
        response = await client.post(
            "/webhooks/portone", content=body, headers=with_signatures(headers, signatures)
        )
        assert response.status_code == 400
        assert response.json()["code"] == "WEBHOOK_SIGNATURE_INVALID"
        assert "at most" in response.json()["detail"]
    assert not portone.calls


async def test_a_webhook_with_as_many_signatures_as_allowed_is_accepted(
    client: httpx.AsyncClient,
) -> None:
    body, headers = signed_webhook("pay_unknown")
    signatures = [junk_signature(n) for n in range(MAX_SIGNATURES - 1)]
    signatures.append(headers["webhook-signature"])

    response = await client.post(
        "/webhooks/portone", content=body, headers=with_signatures(headers, signatures)
    )

    assert response.status_code == 200, response.text
    assert json.loads(response.text) == {"outcome": "ignored"}


@pytest.fixture
def sandbox_settings(database_url: str) -> Settings:
    return make_sandbox_settings(database_url, public_base_url="https://shop.example")


async def test_the_sandbox_demo_builds_its_return_url_from_public_base_url_not_the_host(
    sandbox_settings: Settings, db: asyncpg.Connection
) -> None:
    app = create_app(sandbox_settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        made = await client.post("/sandbox/checkout", headers={"Host": "evil.example"})

    assert made.status_code == 201, made.text
    assert made.json()["returnUrl"] == "https://shop.example/"
