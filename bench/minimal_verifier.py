"""The bench's yardstick: a minimal correct verifier, as raw ASGI on uvicorn.

    DATABASE_URL=postgresql://… PORTONE_API_BASE_URL=http://127.0.0.1:9100 \
    PORTONE_API_SECRET=… PORTONE_STORE_ID=… PORTONE_WEBHOOK_SECRETS=whsec_… \
    python bench/minimal_verifier.py --port 8002

It keeps the guarantees the service keeps and nothing else: look the order up, one GET
to PortOne (no transaction open), then on asyncpg `BEGIN; SELECT … FOR UPDATE; UPDATE;
INSERT event; COMMIT`. Webhooks: verify the Standard Webhooks signature, store the
delivery (claimed once by its webhook-id), fetch, apply, mark the delivery done.
PortOne is reached on the client the service uses in production, one `httpx.AsyncClient`
whose transport is httpx-aiohttp's `AiohttpTransport`: a ratio against this verifier
then measures the service's own work, not a difference of HTTP clients.
It uses the service's tables (orders, order_history, webhook_deliveries) after
`alembic upgrade head`; it is a yardstick, not a second implementation of docs/contract.md.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import uvicorn
from httpx_aiohttp import AiohttpTransport

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

FIND = (
    "SELECT id, payment_id, order_name, amount, currency, status FROM orders WHERE payment_id = $1"
)
LOCK = "SELECT id, status, amount, currency FROM orders WHERE payment_id = $1 FOR UPDATE"
PAY = (
    "UPDATE orders SET status = $2, portone_status = $3, status_changed_at = $4, paid_at = $5,"
    " paid_amount = $6, rejection_reason = $7, updated_at = now() WHERE id = $1"
)
EVENT = (
    "INSERT INTO order_history (order_id, source, portone_status, from_status, to_status, detail)"
    " VALUES ($1, $2, $3, $4, $5, $6)"
)
CLAIM = (
    "INSERT INTO webhook_deliveries (webhook_id, body, type, payment_id, status, lease_until)"
    " VALUES ($1, $2, $3, $4, 'PROCESSING', now() + interval '60 seconds')"
    " ON CONFLICT (webhook_id) DO NOTHING RETURNING id"
)
FINISH = (
    "UPDATE webhook_deliveries SET status = $2, outcome = $3, processed_at = now(),"
    " lease_until = NULL WHERE webhook_id = $1"
)
UNSETTLED = ("PENDING", "AWAITING_DEPOSIT")
TOLERANCE_SECONDS = 300


class Problem(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.body = {"status": status, "code": code, "detail": detail}


def _timestamp(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


class Verifier:
    def __init__(self) -> None:
        self.store_id = os.environ["PORTONE_STORE_ID"]
        self.store_query = "?storeId=" + quote(self.store_id, safe="")
        self.keys = [
            base64.b64decode(s.strip().removeprefix("whsec_"))
            for s in os.environ["PORTONE_WEBHOOK_SECRETS"].split(",")
            if s.strip()
        ]
        self.pool: asyncpg.Pool
        self.http: httpx.AsyncClient

    async def start(self) -> None:
        dsn = os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
        # The same ceiling of connections as the service's pool (10 + 20 overflow).
        self.pool = await asyncpg.create_pool(dsn, min_size=10, max_size=30)
        self.http = httpx.AsyncClient(
            base_url=os.environ["PORTONE_API_BASE_URL"].rstrip("/") + "/",
            headers={"Authorization": f"PortOne {os.environ['PORTONE_API_SECRET']}"},
            timeout=httpx.Timeout(10, connect=3),
            transport=AiohttpTransport(limits=httpx.Limits(max_connections=100)),
        )

    async def stop(self) -> None:
        await self.http.aclose()
        await self.pool.close()

    async def fetch(self, payment_id: str) -> dict[str, Any]:
        # storeId on every read, as docs/contract.md asks of the service too.
        path = "payments/" + quote(payment_id, safe="") + self.store_query
        response = await self.http.get(path)
        if response.status_code != 200:
            raise Problem(503, "PORTONE_UNAVAILABLE", f"PortOne answered {response.status_code}")
        payment: dict[str, Any] = response.json()
        if payment.get("id") != payment_id:
            raise Problem(503, "PORTONE_UNAVAILABLE", "PortOne answered for another payment")
        return payment

    def rejection(self, payment: dict[str, Any], amount: int, currency: str) -> str | None:
        if payment.get("storeId") != self.store_id:
            return "STORE_MISMATCH"
        if payment.get("currency") != currency:
            return "CURRENCY_MISMATCH"
        if payment["amount"]["total"] != amount:
            return "AMOUNT_MISMATCH"
        if (payment.get("channel") or {}).get("type") != "LIVE":
            return "TEST_CHANNEL"
        return None

    async def apply(self, payment_id: str, payment: dict[str, Any], source: str) -> str:
        """Lock, decide, update, record, commit; the order's status afterwards."""
        status = payment["status"]
        async with self.pool.acquire() as db, db.transaction():
            order = await db.fetchrow(LOCK, payment_id)
            if order is None:
                raise Problem(404, "ORDER_NOT_FOUND", f"no order has paymentId {payment_id}")
            before = after = order["status"]
            rejection = None
            if status == "PAID" and before in UNSETTLED:
                rejection = self.rejection(payment, order["amount"], order["currency"])
                after = "REJECTED" if rejection else "PAID"
                await db.execute(
                    PAY,
                    order["id"],
                    after,
                    status,
                    _timestamp(payment.get("statusChangedAt")),
                    _timestamp(payment.get("paidAt")),
                    payment["amount"].get("paid"),
                    rejection,
                )
            detail = rejection or f"PortOne: {status} {payment['amount']['total']}"
            await db.execute(EVENT, order["id"], source, status, before, after, detail)
        return after

    async def complete(self, body: bytes) -> tuple[int, dict[str, Any]]:
        payment_id = json.loads(body)["paymentId"]
        order = await self.pool.fetchrow(FIND, payment_id)
        if order is None:
            raise Problem(404, "ORDER_NOT_FOUND", f"no order has paymentId {payment_id}")
        status = order["status"]
        if status not in UNSETTLED:
            return _answer(order, status)  # settled: answered from the database
        status = await self.apply(payment_id, await self.fetch(payment_id), "complete")
        return _answer(order, status)

    async def webhook(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        webhook_id = self.verify(headers, body)
        event = json.loads(body)
        data = event.get("data") or {}
        payment_id = data.get("paymentId")
        if not isinstance(payment_id, str) or data.get("storeId") != self.store_id:
            raise Problem(400, "WEBHOOK_PAYLOAD_INVALID", "not a payment of this store")
        text = body.decode()
        claimed = await self.pool.fetchval(CLAIM, webhook_id, text, event["type"], payment_id)
        if claimed is None:
            return 200, {"outcome": "duplicate"}
        if await self.pool.fetchrow(FIND, payment_id) is None:
            await self.pool.execute(FINISH, webhook_id, "IGNORED", "unknown paymentId")
            return 200, {"outcome": "ignored"}
        try:
            status = await self.apply(payment_id, await self.fetch(payment_id), "webhook")
        except Exception as exc:
            await self.pool.execute(FINISH, webhook_id, "FAILED", repr(exc))
            raise
        await self.pool.execute(FINISH, webhook_id, "PROCESSED", f"-> {status}")
        return 200, {"outcome": "processed"}

    def verify(self, headers: dict[str, str], body: bytes) -> str:
        webhook_id = headers.get("webhook-id", "")
        timestamp = headers.get("webhook-timestamp", "")
        presented = headers.get("webhook-signature", "").split(" ")
        if not webhook_id or not timestamp.isdigit():
            raise Problem(400, "WEBHOOK_SIGNATURE_INVALID", "missing signature headers")
        if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
            raise Problem(400, "WEBHOOK_SIGNATURE_INVALID", "stale timestamp")
        content = f"{webhook_id}.{timestamp}.".encode() + body
        for key in self.keys:
            digest = hmac.new(key, content, hashlib.sha256).digest()
            expected = "v1," + base64.b64encode(digest).decode()
            if any(hmac.compare_digest(expected, sig) for sig in presented):
                return webhook_id
        raise Problem(400, "WEBHOOK_SIGNATURE_INVALID", "no signature matches")


def _answer(order: asyncpg.Record, status: str) -> tuple[int, dict[str, Any]]:
    if status in ("PAID", "AWAITING_DEPOSIT"):
        return 200, {
            "orderId": order["id"],
            "paymentId": order["payment_id"],
            "orderName": order["order_name"],
            "amount": order["amount"],
            "currency": order["currency"],
            "status": status,
        }
    raise Problem(409, "PAYMENT_NOT_PAID", f"order is {status}")


def make_app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    verifier = Verifier()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(verifier, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        path = scope["path"]
        try:
            if path == "/payments/complete":
                status, answer = await verifier.complete(body)
            elif path == "/webhooks/portone":
                headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
                status, answer = await verifier.webhook(headers, body)
            else:
                status, answer = 404, {"code": "NOT_FOUND"}
        except Problem as problem:
            status, answer = problem.status, problem.body
        except (ValueError, KeyError, TypeError):
            status, answer = 422, {"code": "VALIDATION_FAILED"}
        except (OSError, httpx.HTTPError, asyncpg.PostgresError):
            status, answer = 503, {"code": "UNAVAILABLE"}
        payload = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return app


async def _lifespan(verifier: Verifier, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await verifier.start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await verifier.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args()
    uvicorn.run(make_app(), host=args.host, port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
