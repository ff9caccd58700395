"""`GET /payments/return`: where PortOne's redirect flow brings the customer back.

Mobile browsers leave the shop's page for the payment window and come back by redirect,
not by `requestPayment` resolving. The payment is verified exactly as `/payments/complete`
verifies it; the customer is then sent to the order's stored `returnUrl` (never to a URL
from the query) with what happened added to its query. An order without one, or a
paymentId nobody knows, gets a small page saying so.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from app.errors import OrderNotFound, PaymentNotPaid
from app.orders.order import Order
from app.payments.complete import Completion
from app.portone.errors import PortOneError

logger = logging.getLogger(__name__)

FAILED = "FAILED"


@dataclass(frozen=True)
class Landing:
    """Where the customer goes next: `location` (a 303), or a page to show (`status`)."""

    status: int
    location: str | None = None
    page: str = ""


class ReturnDoor:
    def __init__(self, completion: Completion) -> None:
        self._completion = completion

    async def land(self, payment_id: str, *, code: str | None, message: str | None) -> Landing:
        try:
            order = await self._order_after(payment_id, failed=code is not None)
        except OrderNotFound:
            return Landing(404, page=_page("Payment not found", "No order has this payment."))
        facts = {"orderId": order.id, "paymentId": order.payment_id}
        if code is not None:
            facts |= {"status": FAILED, "code": code, "message": message or ""}
        else:
            facts["status"] = order.status
        if order.return_url is None:
            return Landing(200, page=_page(_headline(facts["status"]), _facts(facts)))
        return Landing(303, location=_with_query(order.return_url, facts))

    async def _order_after(self, payment_id: str, *, failed: bool) -> Order:
        """The order once its payment is verified; as it stands, when PortOne reported a
        failure to the browser or cannot be asked now (the shop's page shows PENDING, and
        the webhook or the reconciler settles it)."""
        if not failed:
            try:
                order, _ = await self._completion.verify(payment_id)
                return order
            except PaymentNotPaid:
                pass
            except PortOneError as exc:
                logger.warning("verifying %s on its return failed: %s", payment_id, exc)
        return await self._completion.order_of(payment_id)


def _with_query(url: str, facts: dict[str, str]) -> str:
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in facts]
    return urlunsplit(parts._replace(query=urlencode([*kept, *facts.items()])))


def _headline(status: str) -> str:
    return {
        "PAID": "Payment verified",
        "AWAITING_DEPOSIT": "Waiting for your deposit",
        "REJECTED": "Payment rejected",
        FAILED: "Payment failed",
    }.get(status, "Payment not completed")


def _facts(facts: dict[str, str]) -> str:
    rows = "".join(
        f"<dt>{html.escape(key)}</dt><dd>{html.escape(value)}</dd>" for key, value in facts.items()
    )
    return f"<dl>{rows}</dl>"


def _page(headline: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(headline)}</title></head>"
        '<body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto">'
        f"<h1>{html.escape(headline)}</h1>{body}</body></html>"
    )
