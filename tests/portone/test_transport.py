"""Production's transport (aiohttp's pool) against a real HTTP server: what reaches
PortOne, byte for byte.

tests/portone/test_client.py checks the same client with respx in place of the
transport; here the server sees the raw request line, headers and body aiohttp sends.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import aiohttp
import httpx
import pytest

from app.portone import client as portone_client
from app.portone.client import PortOneClient, new_http_client
from app.portone.errors import PaymentNotFound, PortOneUnavailable
from tests.live_server import serving
from tests.portone_payloads import STORE_ID, payment_body
from tests.processes import free_port

SECRET = "transport-secret"


@dataclass
class Seen:
    method: str
    raw_path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakePortOne:
    """A raw ASGI app: PortOne's payment reads and writes, recording every request."""

    requests: list[Seen] = field(default_factory=list)
    failures_left: int = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return  # lifespan: nothing to start
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        raw_path = scope["raw_path"].decode("ascii")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        query = parse_qs(scope["query_string"].decode("ascii"))
        self.requests.append(Seen(scope["method"], raw_path, query, headers, body))
        status, answer, extra = self.answer(scope["method"], raw_path, headers)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    def answer(
        self, method: str, raw_path: str, headers: dict[str, str]
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        if headers.get("authorization") != f"PortOne {SECRET}":
            return 401, b'{"type":"UNAUTHORIZED","message":"no"}', []
        segments = raw_path.split("/")
        payment_id = unquote(segments[2]) if len(segments) > 2 else ""
        if payment_id == "missing":
            return 404, '{"type":"PAYMENT_NOT_FOUND","message":"없음"}'.encode(), []
        if payment_id == "flaky" and self.failures_left:
            self.failures_left -= 1
            return 503, b"", []
        if method == "POST":
            return 200, b"{}", []
        body = json.dumps(payment_body(payment_id)).encode()
        if payment_id == "gzipped":
            return 200, gzip.compress(body), [(b"content-encoding", b"gzip")]
        return 200, body, []


class SlowPortOne:
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await asyncio.sleep(2)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})


@pytest.fixture(scope="module")
def fake() -> FakePortOne:
    return FakePortOne()


@pytest.fixture(scope="module")
def server(fake: FakePortOne) -> Iterator[str]:
    with serving(fake) as url:  # type: ignore[arg-type]
        yield url


@pytest.fixture
async def portone(server: str, fake: FakePortOne) -> AsyncIterator[PortOneClient]:
    fake.requests.clear()
    async with new_http_client(server, SECRET) as http:  # the default: production's transport
        yield PortOneClient(http, store_id=STORE_ID)


async def test_reads_a_payment_with_portones_headers(
    portone: PortOneClient, fake: FakePortOne
) -> None:
    payment = await portone.get_payment("pay-1")

    assert payment.id == "pay-1"
    assert payment.status == "PAID"
    [seen] = fake.requests
    assert (seen.method, seen.raw_path, seen.query, seen.body) == (
        "GET",
        "/payments/pay-1",
        {"storeId": [STORE_ID]},
        b"",
    )
    assert seen.headers["authorization"] == f"PortOne {SECRET}"
    assert seen.headers["accept"] == "application/json"
    assert seen.headers["accept-encoding"] == "gzip, deflate"
    assert seen.headers["user-agent"] == "portone-verifier"
    assert "cookie" not in seen.headers


async def test_a_read_leaves_no_garbage_only_a_collection_frees(portone: PortOneClient) -> None:
    """A collection's pause grows with the reference cycles it frees: httpx's response and
    its body's stream point at each other, holding the request, aiohttp's response and the
    rest until a collection, unless the client unlinks them once the body is read."""
    await portone.get_payment("pay-1")  # the connection is open and pooled
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(3):
            await portone.get_payment("pay-1")
        with pytest.raises(PaymentNotFound):
            await portone.get_payment("missing")
        gc.collect()
        kept = [o for o in gc.garbage if isinstance(o, httpx.Response | aiohttp.ClientResponse)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert kept == []


@pytest.mark.parametrize(
    "payment_id", ["a/b", "?#", "결제-0001", "%2F", "a b", "a%2Fb", "a.", "..."]
)
async def test_payment_id_arrives_as_one_encoded_path_segment(
    portone: PortOneClient, fake: FakePortOne, payment_id: str
) -> None:
    payment = await portone.get_payment(payment_id)

    [seen] = fake.requests
    segments = seen.raw_path.split("/")
    assert segments[:2] == ["", "payments"]
    assert len(segments) == 3, seen.raw_path
    assert unquote(segments[2]) == payment_id
    assert seen.query == {"storeId": [STORE_ID]}
    assert payment.id == payment_id


async def test_a_gzipped_answer_is_read(portone: PortOneClient) -> None:
    assert (await portone.get_payment("gzipped")).id == "gzipped"


async def test_writes_send_their_json_body_and_query(
    portone: PortOneClient, fake: FakePortOne
) -> None:
    await portone.pre_register(
        "pay/2", total_amount=1000, currency="KRW", idempotency_key="pre-register-pay/2-key"
    )
    await portone.close_virtual_account("pay-3", idempotency_key="close-account-pay-3")

    register, close = fake.requests
    assert (register.method, register.raw_path) == ("POST", "/payments/pay%2F2/pre-register")
    assert register.headers["content-type"] == "application/json"
    assert register.headers["idempotency-key"] == '"pre-register-pay/2-key"'
    assert close.headers["idempotency-key"] == '"close-account-pay-3"'
    assert json.loads(register.body) == {
        "storeId": STORE_ID,
        "totalAmount": 1000,
        "currency": "KRW",
    }
    assert (close.raw_path, close.query) == (
        "/payments/pay-3/virtual-account/close",
        {"storeId": [STORE_ID]},
    )


async def test_list_sends_its_options_as_the_request_body_parameter(
    portone: PortOneClient, fake: FakePortOne
) -> None:
    fake_page = {"items": [], "page": {"number": 0, "size": 10, "totalCount": 0}}
    fake.answer = lambda *_: (200, json.dumps(fake_page).encode(), [])  # type: ignore[method-assign]
    try:
        await portone.list_payments({"filter": {"storeId": STORE_ID}, "page": {"size": 10}})
    finally:
        del fake.answer

    [seen] = fake.requests
    assert seen.raw_path == "/payments"
    assert json.loads(seen.query["requestBody"][0]) == {
        "filter": {"storeId": STORE_ID},
        "page": {"size": 10},
    }


async def test_typed_errors_survive_the_wire(portone: PortOneClient) -> None:
    with pytest.raises(PaymentNotFound):
        await portone.get_payment("missing")


async def test_a_server_error_is_retried(portone: PortOneClient, fake: FakePortOne) -> None:
    fake.failures_left = 1

    assert (await portone.get_payment("flaky")).id == "flaky"
    assert len(fake.requests) == 2


async def test_refused_connections_are_unavailable() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with new_http_client(closed, SECRET) as http:
        with pytest.raises(PortOneUnavailable, match="unreachable"):
            await PortOneClient(http, store_id=STORE_ID).get_payment("any")


async def test_a_slow_portone_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(portone_client, "TIMEOUT", httpx.Timeout(0.3))
    with serving(SlowPortOne()) as url:  # type: ignore[arg-type]
        async with new_http_client(url, SECRET) as http:
            with pytest.raises(PortOneUnavailable, match="timed out"):
                await PortOneClient(http, store_id=STORE_ID).get_payment("slow")


async def test_a_call_after_the_client_closed_is_unavailable(server: str) -> None:
    http = new_http_client(server, SECRET)
    client = PortOneClient(http, store_id=STORE_ID)
    await client.get_payment("pay-1")
    await http.aclose()

    with pytest.raises(PortOneUnavailable, match="unreachable"):
        await client.get_payment("pay-1")
