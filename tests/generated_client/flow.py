"""A shop's backend on a client generated from /openapi.json: create, pay, complete, refund.

    python flow.py BASE_URL TOKEN   # beside the generated package `client`

`tests/test_generated_client.py` generates the client, type-checks this file against it
(mypy --strict) and runs it against the sandbox; the repository's own mypy leaves it out,
since `client` exists only there.
"""

from __future__ import annotations

import json
import sys

from client import AuthenticatedClient, Client
from client.api.orders import create_order, get_order, refund_order
from client.api.payments import complete
from client.api.sandbox_customer_and_console import pay
from client.models import CompleteRequest, OrderCreate, OrderOut, Pay, PaymentResult, RefundRequest


def main(base_url: str, token: str) -> dict[str, object]:
    shop = AuthenticatedClient(base_url=base_url, token=token)
    browser = Client(base_url=base_url)
    wanted = OrderCreate(order_name="Waffle trainer 2", amount=10_000)
    order = create_order.sync(client=shop, body=wanted)
    assert isinstance(order, OrderOut), order
    paid = pay.sync_detailed(order.payment_id, client=browser, body=Pay())
    completed = complete.sync(client=browser, body=CompleteRequest(payment_id=order.payment_id))
    assert isinstance(completed, PaymentResult), completed
    refunded = refund_order.sync(
        order.order_id,
        client=shop,
        body=RefundRequest(amount=3_000, reason="one waffle was cold"),
        idempotency_key="refund-1",
    )
    assert isinstance(refunded, OrderOut), refunded
    again = get_order.sync(order.order_id, client=shop)
    assert isinstance(again, OrderOut), again
    return {
        "orderId": order.order_id,
        "created": order.status,
        "paid": paid.status_code,
        "completed": completed.status,
        "refunded": [refunded.status, refunded.refunded_amount],
        "stored": [again.status, [r.amount for r in again.refunds]],
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
