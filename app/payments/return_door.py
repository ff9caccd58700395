"""`GET /payments/return`: where PortOne's redirect flow brings the customer back.

Mobile browsers leave the shop's page for the payment window and come back by redirect,
not by `requestPayment` resolving. The payment is verified exactly as `/payments/complete`
verifies it; the customer is then sent to the order's stored `returnUrl` (never to a URL
from the query) with what happened added to its query. An order without one, or a
paymentId nobody knows, gets a small page saying so.

The query is the customer's browser talking, so nothing in it is passed on as fact: the
status is the one the service verified, a `code` only in its safe form and only for a
payment that was not made, and a message only when it is PortOne's own.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from app.errors import OrderClosed, OrderNotFound, PaymentNotConfirmed, PaymentNotPaid
from app.orders.order import Order
from app.orders.status import OrderStatus
from app.payments.complete import Completion
from app.portone.errors import PortOneError
from app.portone.models import Payment, PaymentStatus

logger = logging.getLogger(__name__)

FAILED = "FAILED"
SAFE_CODE = re.compile(r"[A-Z0-9_]{1,64}")
"""PortOne's error codes (`FAILURE_TYPE_PG`, …): what of the query's `code` is passed on."""


@dataclass(frozen=True)
class Landing:
    """Where the customer goes next: `location` (a 303), or a page to show (`status`)."""

    status: int
    location: str | None = None
    page: str = ""


class ReturnDoor:
    def __init__(self, completion: Completion) -> None:
        self._completion = completion

    async def land(
        self,
        payment_id: str,
        *,
        code: str | None,
        payment_token: str | None = None,
        tx_id: str | None = None,
    ) -> Landing:
        try:
            order, payment = await self._verified(payment_id, payment_token, tx_id)
        except OrderNotFound:
            return Landing(404, page=_page("Payment not found", "No order has this payment."))
        facts = {"orderId": order.id, "paymentId": order.payment_id, "status": order.status}
        if code is not None and order.status == OrderStatus.PENDING:
            facts["status"] = FAILED
            if SAFE_CODE.fullmatch(code):
                facts["code"] = code
            if (message := _portone_message(payment)) is not None:
                facts["message"] = message
        if order.return_url is None:
            return Landing(200, page=_page(_headline(facts["status"]), _facts(facts)))
        return Landing(303, location=_with_query(order.return_url, facts))

    async def _verified(
        self, payment_id: str, payment_token: str | None, tx_id: str | None
    ) -> tuple[Order, Payment | None]:
        """The order once its payment is verified (confirmed first, with a token), and the
        payment as PortOne showed it; the order as it stands when PortOne has no such
        payment, refused to confirm it, the order is closed, or PortOne cannot be asked now
        (the shop's page shows the status, and the webhook or the reconciler settles it)."""
        try:
            order, observation = await self._completion.verify(
                payment_id, payment_token=payment_token, tx_id=tx_id
            )
            return order, observation.payment if observation else None
        except (PaymentNotPaid, PaymentNotConfirmed, OrderClosed):
            pass
        except PortOneError as exc:
            logger.warning("verifying %s on its return failed: %s", payment_id, exc)
        return await self._completion.order_of(payment_id), None


def _portone_message(payment: Payment | None) -> str | None:
    """Why PortOne says the payment failed, in its own words (the PG's, when it has none)."""
    if payment is None or payment.status != PaymentStatus.FAILED or payment.failure is None:
        return None
    return payment.failure.reason or payment.failure.pg_message


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
