"""A minimal, fast PortOne V2 stand-in for the benchmark (loopback only).

    python bench/portone_standin.py --port 9100 --store-id store-bench [--latency-ms 0]

GET /payments/{id}: a realistic PAID card payment of 10000 KRW in the configured store,
for any id; READY (not paid yet) for an id that starts with `unpaid-`. GET /payments: an
empty page. PUT /_bench/latency?ms=50 changes the added latency while it runs (the
benchmark switches between 0 and 50 ms without restarts); GET /_bench/reads counts the
payment reads answered so far.

Why not the sandbox's emulator (app.sandbox.emulator), which the stress run uses: the
bench measures the service, so PortOne must cost it nothing. This stand-in keeps no
state but a count, and validates nothing; each answer is one of two bodies formatted at
start-up, the id put in by one replace. It shares the 2-core machine with the service,
the database and the load generator, and must never become the bottleneck or the noise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import uvloop
from aiohttp import web

AMOUNT = 10_000
PLACEHOLDER = "@@PAYMENT_ID@@"
UNPAID_PREFIX = "unpaid-"
EMPTY_PAGE = json.dumps({"items": [], "page": {"number": 0, "size": 100, "totalCount": 0}})


def paid_payment(store_id: str) -> dict[str, Any]:
    """A PAID payment with every field the real API sends; the id is a placeholder."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {
        "status": "PAID",
        "id": PLACEHOLDER,
        "transactionId": f"tx-{PLACEHOLDER}",
        "merchantId": "merchant-bench",
        "storeId": store_id,
        "method": {
            "type": "PaymentMethodCard",
            "card": {
                "publisher": "SHINHAN",
                "issuer": "SHINHAN",
                "brand": "MASTER",
                "type": "CREDIT",
                "ownerType": "PERSONAL",
                "bin": "532750",
                "name": "Shinhan Master",
                "number": "53275019****1234",
            },
            "approvalNumber": "30012345",
            "installment": {"month": 0, "isInterestFree": False},
            "pointUsed": False,
        },
        "channel": {
            "type": "LIVE",
            "id": "channel-id-bench",
            "key": "channel-key-bench",
            "name": "bench channel",
            "pgProvider": "TOSSPAYMENTS",
            "pgMerchantId": "pg-merchant-bench",
        },
        "version": "V2",
        "requestedAt": now,
        "updatedAt": now,
        "statusChangedAt": now,
        "orderName": "Waffle trainer 2",
        # Newer than the reference OpenAPI; portone-server-sdk requires it (flask_sample.py).
        "origin": {"platformType": "PC", "ipAddress": "203.0.113.7"},
        "amount": {
            "total": AMOUNT,
            "taxFree": 0,
            "vat": AMOUNT // 11,
            "supply": AMOUNT - AMOUNT // 11,
            "discount": 0,
            "paid": AMOUNT,
            "cancelled": 0,
            "cancelledTaxFree": 0,
        },
        "currency": "KRW",
        "customer": {
            "id": "customer-1",
            "name": "Hong Gildong",
            "email": "gildong@example.com",
            "phoneNumber": "01012345678",
        },
        "isCulturalExpense": False,
        "products": [{"id": "sku-1", "name": "Waffle trainer 2", "amount": AMOUNT, "quantity": 1}],
        "productCount": 1,
        "customData": '{"item":"sku-1"}',  # the item bench/flask_sample.py sells
        "country": "KR",
        "paidAt": now,
        "pgTxId": "pg-tx-bench",
        "receiptUrl": "https://receipt.example.com/bench",
        "webhooks": [],
        "disputes": [],
    }


def ready_payment(store_id: str) -> dict[str, Any]:
    """The same payment before the customer has paid: READY, nothing paid, no method."""
    paid = paid_payment(store_id)
    unpaid = {
        k: v for k, v in paid.items() if k not in ("method", "paidAt", "pgTxId", "receiptUrl")
    }
    return {**unpaid, "status": "READY", "amount": {**paid["amount"], "paid": 0}}


def template(payment: dict[str, Any]) -> str:
    return json.dumps(payment, ensure_ascii=False, separators=(",", ":"))


def make_app(store_id: str, latency_ms: float) -> web.Application:
    paid, ready = template(paid_payment(store_id)), template(ready_payment(store_id))
    state = {"latency": latency_ms / 1000, "reads": 0}

    async def get_payment(request: web.Request) -> web.Response:
        state["reads"] += 1
        if state["latency"]:
            await asyncio.sleep(state["latency"])
        raw_id = request.match_info["payment_id"]
        body = ready if raw_id.startswith(UNPAID_PREFIX) else paid
        # Ids are JSON-escaped, then put into the prepared body with one replace.
        payment_id = json.dumps(raw_id)[1:-1]
        return web.Response(
            text=body.replace(PLACEHOLDER, payment_id), content_type="application/json"
        )

    async def list_payments(_: web.Request) -> web.Response:
        if state["latency"]:
            await asyncio.sleep(state["latency"])
        return web.Response(text=EMPTY_PAGE, content_type="application/json")

    async def set_latency(request: web.Request) -> web.Response:
        state["latency"] = float(request.query.get("ms", "0")) / 1000
        return web.json_response({"latencyMs": state["latency"] * 1000})

    async def reads(_: web.Request) -> web.Response:
        return web.json_response({"reads": state["reads"]})

    app = web.Application()
    app.router.add_get("/payments/{payment_id}", get_payment)
    app.router.add_get("/payments", list_payments)
    app.router.add_put("/_bench/latency", set_latency)
    app.router.add_get("/_bench/reads", reads)
    return app


async def serve(host: str, port: int, store_id: str, latency_ms: float) -> None:
    runner = web.AppRunner(make_app(store_id, latency_ms), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024).start()
    print(f"PortOne stand-in on http://{host}:{port} (latency {latency_ms} ms)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--store-id", default="store-bench")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.host, args.port, args.store_id, args.latency_ms))


if __name__ == "__main__":
    main()
