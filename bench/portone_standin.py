"""A minimal, fast PortOne V2 stand-in for the benchmark (loopback only).

    python bench/portone_standin.py --port 9100 --store-id store-bench [--latency-ms 0]

GET /payments/{id}: a realistic PAID card payment of 10000 KRW in the configured store,
for any id. GET /payments: an empty page. PUT /_bench/latency?ms=50 changes the added
latency while it runs (the benchmark switches between 0 and 50 ms without restarts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime

import uvloop
from aiohttp import web

AMOUNT = 10_000
PLACEHOLDER = "@@PAYMENT_ID@@"
EMPTY_PAGE = json.dumps({"items": [], "page": {"number": 0, "size": 100, "totalCount": 0}})


def payment_template(store_id: str) -> str:
    """A PAID body with every field the real API sends; the id is substituted per request."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    body = {
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
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def make_app(store_id: str, latency_ms: float) -> web.Application:
    template = payment_template(store_id)
    state = {"latency": latency_ms / 1000}

    async def get_payment(request: web.Request) -> web.Response:
        if state["latency"]:
            await asyncio.sleep(state["latency"])
        # Ids are JSON-escaped, then put into the prepared body with one replace.
        payment_id = json.dumps(request.match_info["payment_id"])[1:-1]
        return web.Response(
            text=template.replace(PLACEHOLDER, payment_id), content_type="application/json"
        )

    async def list_payments(_: web.Request) -> web.Response:
        if state["latency"]:
            await asyncio.sleep(state["latency"])
        return web.Response(text=EMPTY_PAGE, content_type="application/json")

    async def set_latency(request: web.Request) -> web.Response:
        state["latency"] = float(request.query.get("ms", "0")) / 1000
        return web.json_response({"latencyMs": state["latency"] * 1000})

    app = web.Application()
    app.router.add_get("/payments/{payment_id}", get_payment)
    app.router.add_get("/payments", list_payments)
    app.router.add_put("/_bench/latency", set_latency)
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
