"""What merchants copy today: a verifier written after PortOne's Flask sample.

    PORTONE_API_BASE_URL=http://127.0.0.1:9100 PORTONE_API_SECRET=… \
    python bench/flask_sample.py --port 8003

Our own code, shaped as PortOne's tutorial server is (developers.portone.io, the Python
Flask sample): payments kept in a dict, the payment fetched with portone-server-sdk's
synchronous client, checked against the item named in its customData, and Flask's own
threaded server, as `flask run` serves it. No database, no lock: a yardstick of speed, not
of correctness.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import portone_server_sdk as portone
from flask import Flask, jsonify, request


@dataclass
class Item:
    id: str
    name: str
    price: int
    currency: str


@dataclass
class Payment:
    status: str


def create_app() -> Flask:
    app = Flask(__name__)
    # The one item the stand-in's payments are for (its customData names it).
    items = {"sku-1": Item("sku-1", "Waffle trainer 2", 10_000, "KRW")}
    client = portone.PaymentClient(
        secret=os.environ["PORTONE_API_SECRET"], base_url=os.environ["PORTONE_API_BASE_URL"]
    )
    payments: dict[str, Payment] = {}

    def verified(actual: Any) -> bool:
        if actual.custom_data is None:
            return False
        item = items.get(json.loads(actual.custom_data).get("item"))
        return (
            item is not None
            and actual.order_name == item.name
            and actual.amount.total == item.price
            and actual.currency == item.currency
        )

    def sync_payment(payment_id: str) -> Payment | None:
        payment = payments.setdefault(payment_id, Payment("PENDING"))
        try:
            actual = client.get_payment(payment_id=payment_id)
        except portone.payment.GetPaymentError:
            return None
        if isinstance(actual, portone.payment.PaidPayment):
            if not verified(actual):
                return None
            payment.status = "PAID"
        elif isinstance(actual, portone.payment.VirtualAccountIssuedPayment):
            payment.status = "VIRTUAL_ACCOUNT_ISSUED"
        else:
            return None
        return payment

    # The path the bench's load generator uses for every verifier.
    @app.post("/payments/complete")
    def complete() -> Any:
        payment = sync_payment(request.get_json()["paymentId"])
        if payment is None:
            return "결제 동기화에 실패했습니다.", 400
        return jsonify(status=payment.status)

    @app.get("/")
    def index() -> Any:
        return jsonify(ok=True)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log, as for the others
    create_app().run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
