"""`POST /webhooks/portone` through HTTP: bad signatures, unreadable bodies, ignored events.

A rejected delivery must answer 400 (never 2xx, never 5xx), reach PortOne never and
leave nothing in `webhook_deliveries`; a deliberately ignored one answers 200, is
stored as IGNORED and reaches PortOne never either.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
import respx
from fastapi import FastAPI
from starlette.types import Message, Scope

from app import standard_webhooks
from app.standard_webhooks import decode_secret
from tests.helpers import WEBHOOK_SECRET, create_order, portone_returns, sign_literal
from tests.portone_payloads import STORE_ID, iso
from tests.problem_details import assert_problem

KEY = decode_secret(WEBHOOK_SECRET)
WRONG_KEY = b"not-the-configured-secret"
URL = "/webhooks/portone"
A_B64 = base64.b64encode(b"\x01" * 32).decode()

RawHeaders = dict[str, bytes]


def event(
    payment_id: str,
    *,
    kind: str = "Transaction.Paid",
    store_id: str = STORE_ID,
    **data: Any,
) -> bytes:
    """A 2024-04-25 webhook body."""
    body = {
        "type": kind,
        "timestamp": iso_now(),
        "data": {
            "storeId": store_id,
            "paymentId": payment_id,
            "transactionId": f"tx-{payment_id}",
            **data,
        },
    }
    return json.dumps(body).encode()


def iso_now() -> str:
    return iso(datetime.now(UTC))


def signed(
    body: bytes,
    *,
    webhook_id: str = "msg_route_0001",
    timestamp: int | None = None,
    key: bytes = KEY,
) -> dict[str, str]:
    return standard_webhooks.headers(key, webhook_id, body, at=timestamp)


async def deliver(
    client: httpx.AsyncClient, body: bytes, headers: dict[str, str] | RawHeaders
) -> httpx.Response:
    raw = [
        (name.encode(), value if isinstance(value, bytes) else value.encode())
        for name, value in headers.items()
    ]
    return await client.post(URL, content=body, headers=raw)


def spy_on_portone(portone: respx.MockRouter) -> respx.Route:
    """Answer (and so record) any PortOne call no earlier route took; add it last."""
    route: respx.Route = portone.route().respond(500)
    return route


async def deliveries(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM webhook_deliveries ORDER BY id")


# --- malformed signatures -----------------------------------------------------------------
#
# Each case turns a correctly signed (headers, body) into a malformed delivery.

Mutation = Callable[[RawHeaders, bytes], tuple[RawHeaders, bytes]]


def _without(name: str) -> Mutation:
    def mutate(headers: RawHeaders, body: bytes) -> tuple[RawHeaders, bytes]:
        return {k: v for k, v in headers.items() if k != name}, body

    return mutate


def _with(name: str, value: bytes) -> Mutation:
    def mutate(headers: RawHeaders, body: bytes) -> tuple[RawHeaders, bytes]:
        return headers | {name: value}, body

    return mutate


def _signature(make: Callable[[bytes], bytes]) -> Mutation:
    """Replace webhook-signature with a function of the valid one."""

    def mutate(headers: RawHeaders, body: bytes) -> tuple[RawHeaders, bytes]:
        return headers | {"webhook-signature": make(headers["webhook-signature"])}, body

    return mutate


def _timestamp(value: str) -> Mutation:
    """A malformed timestamp, with a signature right over it as written."""

    def mutate(headers: RawHeaders, body: bytes) -> tuple[RawHeaders, bytes]:
        webhook_id = headers["webhook-id"].decode()
        signature = sign_literal(KEY, webhook_id, value, body)
        return headers | {
            "webhook-timestamp": value.encode(),
            "webhook-signature": signature.encode(),
        }, body

    return mutate


def _resigned(offset: int = 0, key: bytes = KEY) -> Mutation:
    """Signed correctly, but `offset` seconds away from now or with another key."""

    def mutate(headers: RawHeaders, body: bytes) -> tuple[RawHeaders, bytes]:
        webhook_id = headers["webhook-id"].decode()
        fresh = signed(body, webhook_id=webhook_id, timestamp=int(time.time()) + offset, key=key)
        return {k: v.encode() for k, v in fresh.items()}, body

    return mutate


def _body(make: Callable[[bytes], bytes], *, resign: bool) -> Mutation:
    def mutate(headers: RawHeaders, body: bytes) -> tuple[RawHeaders, bytes]:
        changed = make(body)
        if resign:
            webhook_id = headers["webhook-id"].decode()
            return {k: v.encode() for k, v in signed(changed, webhook_id=webhook_id).items()}, (
                changed
            )
        return headers, changed

    return mutate


def _flip_middle_byte(body: bytes) -> bytes:
    changed = bytearray(body)
    changed[len(changed) // 2] ^= 0x01
    return bytes(changed)


MALFORMED: dict[str, Mutation] = {
    "missing webhook-id": _without("webhook-id"),
    "missing webhook-timestamp": _without("webhook-timestamp"),
    "missing webhook-signature": _without("webhook-signature"),
    "empty webhook-id": _with("webhook-id", b""),
    "empty webhook-timestamp": _with("webhook-timestamp", b""),
    "empty webhook-signature": _with("webhook-signature", b""),
    "entry without comma": _with("webhook-signature", b"v1abc"),
    "valid digest without comma": _signature(lambda s: s.replace(b",", b"", 1)),
    "bad base64": _with("webhook-signature", b"v1,@@@"),
    "non-ascii webhook-id": _with("webhook-id", "msg_é".encode()),
    "non-ascii webhook-timestamp": _with("webhook-timestamp", "\uff11\uff17".encode()),
    "non-ascii webhook-signature": _signature(lambda s: s + " v1,ñ".encode()),
    "two spaces between entries": _with("webhook-signature", b"v1,a  v1,b"),
    "two spaces before a valid entry": _signature(lambda s: f"v1,{A_B64}  ".encode() + s),
    "leading space": _signature(lambda s: b" " + s),
    "trailing space": _signature(lambda s: s + b" "),
    "only unknown versions": _with("webhook-signature", f"v2,{A_B64}".encode()),
    "valid digest under v2": _signature(lambda s: b"v2" + s[2:]),
    "non-numeric timestamp": _timestamp("now"),
    "negative timestamp": _timestamp(f"-{int(time.time())}"),
    "fractional timestamp": _timestamp(f"{int(time.time())}.5"),
    "exponent timestamp": _timestamp("1e9"),
    "huge timestamp": _timestamp("9" * 40),
    "far-future timestamp": _timestamp("99999999999"),
    "replayed old timestamp": _resigned(offset=-3600),
    "timestamp just past the tolerance": _resigned(offset=-360),
    "timestamp ahead of the tolerance": _resigned(offset=+360),
    "wrong secret": _resigned(key=WRONG_KEY),
    "body changed by one byte": _body(_flip_middle_byte, resign=False),
    "body with one byte more": _body(lambda b: b + b" ", resign=False),
}


@pytest.mark.parametrize("mutation", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_a_malformed_delivery_is_400_and_reaches_neither_portone_nor_the_inbox(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    mutation: Mutation,
) -> None:
    order = await create_order(client)
    portone_returns(portone, order["paymentId"])
    spy_on_portone(portone)
    body = event(order["paymentId"])
    good = {k: v.encode() for k, v in signed(body).items()}
    headers, sent = mutation(good, body)

    response = await deliver(client, sent, headers)

    assert_problem(response, 400, "WEBHOOK_SIGNATURE_INVALID")
    assert not portone.calls
    assert await deliveries(db) == []


# --- correctly signed, header names in any case ------------------------------------------


def _mixed_case(headers: dict[str, str]) -> dict[str, str]:
    names = {
        "webhook-id": "Webhook-Id",
        "webhook-timestamp": "WEBHOOK-TIMESTAMP",
        "webhook-signature": "Webhook-Signature",
    }
    return {names.get(name, name): value for name, value in headers.items()}


def _as_signed(headers: dict[str, str]) -> dict[str, str]:
    return headers


# The control for the matrix above (the same delivery, left alone), and header names in
# mixed case, which HTTP leaves free.
@pytest.mark.parametrize("written", [_as_signed, _mixed_case], ids=["as signed", "mixed case"])
async def test_a_correctly_signed_delivery_is_processed(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    written: Callable[[dict[str, str]], dict[str, str]],
) -> None:
    order = await create_order(client)
    route = portone_returns(portone, order["paymentId"])
    body = event(order["paymentId"])

    response = await deliver(client, body, written(signed(body)))

    assert response.status_code == 200, response.text
    assert response.json() == {"outcome": "processed"}
    assert route.call_count == 1
    [row] = await deliveries(db)
    assert row["status"] == "PROCESSED"


async def _asgi_post(app: FastAPI, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    """POST straight into the ASGI app with header names as given (httpx lowercases them)."""
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"Host", b"service.test"),
            (b"Content-Length", str(len(body)).encode()),
            *((name.encode(), value.encode()) for name, value in headers.items()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("service.test", 80),
        "state": {},
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(status), content


async def test_mixed_case_header_names_are_accepted_when_the_server_keeps_their_case(
    app: FastAPI, client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    """ASGI servers may pass header names as received; the contract: names are case-insensitive."""
    order = await create_order(client)
    route = portone_returns(portone, order["paymentId"])
    body = event(order["paymentId"])

    status, content = await _asgi_post(app, _mixed_case(signed(body)), body)

    assert status == 200, content
    assert json.loads(content) == {"outcome": "processed"}
    assert route.call_count == 1


# --- signed, but unreadable --------------------------------------------------------------

UNREADABLE = {
    "not json": b"payment paid, trust me",
    "truncated json": b'{"type": "Transaction.Paid", "data": {',
    "json array": json.dumps([{"type": "Transaction.Paid", "data": {"paymentId": "p"}}]).encode(),
    "json string": b'"Transaction.Paid"',
    "json null": b"null",
    "transaction without data": json.dumps(
        {"type": "Transaction.Paid", "timestamp": "2026-11-26T10:00:00Z"}
    ).encode(),
    "transaction without data.paymentId": json.dumps(
        {
            "type": "Transaction.Paid",
            "timestamp": "2026-11-26T10:00:00Z",
            "data": {"storeId": STORE_ID, "transactionId": "tx-1"},
        }
    ).encode(),
    "transaction with null paymentId": json.dumps(
        {
            "type": "Transaction.VirtualAccountIssued",
            "timestamp": "2026-11-26T10:00:00Z",
            "data": {"storeId": STORE_ID, "paymentId": None, "transactionId": "tx-1"},
        }
    ).encode(),
    "transaction with empty paymentId": json.dumps(
        {
            "type": "Transaction.Cancelled",
            "timestamp": "2026-11-26T10:00:00Z",
            "data": {"storeId": STORE_ID, "paymentId": "", "transactionId": "tx-1"},
        }
    ).encode(),
    "not UTF-8": b'{"type": "Transaction.Paid", "data": {"paymentId": "\xff\xfe"}}',
    "nested past the JSON parser's stack": b'{"type": "x", "data": '
    + b"[" * 20_000
    + b"]" * 20_000
    + b"}",
    "nested 33 levels": b'{"type": "Transaction.Paid", "data": {"paymentId": "pay_1", "x": '
    + b"[" * 31
    + b"]" * 31
    + b"}}",
}


@pytest.mark.parametrize("body", list(UNREADABLE.values()), ids=list(UNREADABLE))
async def test_a_signed_body_that_is_not_a_readable_webhook_is_400_payload_invalid(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection, body: bytes
) -> None:
    spy_on_portone(portone)

    response = await deliver(client, body, signed(body, webhook_id="msg_unreadable"))

    assert_problem(response, 400, "WEBHOOK_PAYLOAD_INVALID")
    assert not portone.calls
    # a verified delivery is kept raw even when it cannot be read, so nothing is lost
    assert [(row["webhook_id"], row["body"]) for row in await deliveries(db)] == [
        ("msg_unreadable", body.decode(errors="replace"))
    ]


async def test_brackets_in_strings_and_nesting_up_to_the_limit_are_readable(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    nested: dict[str, Any] = {"note": "[{" * 100 + '\\"' + "}]" * 100}
    for _ in range(30):
        nested = {"inner": nested}
    body = json.dumps({"type": "Store.Updated", "data": nested}).encode()  # 32 levels

    row = await _assert_ignored(client, portone, db, body)

    assert row["status"] == "IGNORED"


# --- signed, readable, deliberately ignored ------------------------------------------------


async def _assert_ignored(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    body: bytes,
) -> asyncpg.Record:
    spy_on_portone(portone)

    response = await deliver(client, body, signed(body, webhook_id="msg_ignored"))

    assert response.status_code == 200, response.text
    assert response.json() == {"outcome": "ignored"}
    assert not portone.calls
    [row] = await deliveries(db)
    assert row["webhook_id"] == "msg_ignored"
    assert row["status"] == "IGNORED"
    assert row["body"] == body.decode()
    return row


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("Settlement.Done", {"settlementId": "settle-1"}),
        ("BillingKey.Issued", {"billingKey": "billing-key-1"}),
    ],
    ids=["unknown event type", "billing key event"],
)
async def test_an_event_of_a_type_not_handled_is_ignored(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    kind: str,
    data: dict[str, str],
) -> None:
    body = json.dumps(
        {"type": kind, "timestamp": iso_now(), "data": {"storeId": STORE_ID, **data}}
    ).encode()

    row = await _assert_ignored(client, portone, db, body)

    assert row["type"] == kind


async def test_a_payment_of_another_store_is_ignored_even_for_a_known_payment_id(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    body = event(order["paymentId"], store_id="store-someone-else")

    row = await _assert_ignored(client, portone, db, body)

    assert row["payment_id"] == order["paymentId"]
    status = await db.fetchval("SELECT status FROM orders WHERE id = $1", order["orderId"])
    assert status == "PENDING"


async def test_an_unknown_payment_id_is_ignored(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    body = event("pay_nobody_ordered_this")

    row = await _assert_ignored(client, portone, db, body)

    assert row["payment_id"] == "pay_nobody_ordered_this"
