"""Public payment endpoints: the browser's completion call, and PortOne's webhooks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import Field

from app.deps import ReturnDoorDep, shared
from app.errors import (
    DatabaseUnavailable,
    OrderClosed,
    OrderNotFound,
    PayloadTooLarge,
    PaymentNotConfirmed,
    PaymentNotPaid,
    PaymentRejected,
    WebhookPayloadInvalid,
    WebhookSignatureInvalid,
)
from app.orders.schemas import PaymentResult
from app.payments.inbox import Outcome
from app.problems import problem_responses
from app.schemas import ApiModel
from app.standard_webhooks import MAX_SIGNATURE_HEADER, MAX_SIGNATURES
from app.text import Text

router = APIRouter(tags=["payments"])

PaymentToken = Annotated[
    Text,
    Field(
        min_length=1,
        max_length=2000,
        description="What `requestPayment` resolved with on a channel with manual"
        " confirmation: the payment is then confirmed at PortOne on the order's terms.",
    ),
]


class CompleteRequest(ApiModel):
    """What the browser sends after `PortOne.requestPayment()` resolved without `code`."""

    payment_id: Annotated[Text, Field(min_length=1, max_length=200)]
    tx_id: Annotated[Text, Field(max_length=200)] | None = None
    payment_token: PaymentToken | None = None


@router.post(
    "/payments/complete",
    response_model=PaymentResult,
    responses=problem_responses(
        OrderNotFound,
        PaymentNotPaid,
        PaymentRejected,
        PaymentNotConfirmed,
        OrderClosed,
        PayloadTooLarge,
        502,
        503,
    ),
)
async def complete(body: CompleteRequest, request: Request) -> Response:
    """The payment's outcome once PortOne was asked (and, with `paymentToken`, once the
    payment was confirmed at PortOne on the order's terms): 200 when the order ends PAID
    or AWAITING_DEPOSIT, else the problem that says why."""
    order = await shared(request).completion.complete(
        body.payment_id, payment_token=body.payment_token, tx_id=body.tx_id
    )
    return PaymentResult.of(order).answer()


@router.get(
    "/payments/return",
    response_class=HTMLResponse,
    responses={
        200: {"description": "The order has no returnUrl: a page saying what happened"},
        303: {"description": "To the order's returnUrl, with orderId, paymentId and status"},
        404: {"description": "No order has this paymentId: a page saying so"},
        **problem_responses(DatabaseUnavailable),
    },
)
async def payment_return(
    door: ReturnDoorDep,
    payment_id: Annotated[Text, Query(alias="paymentId", min_length=1, max_length=200)],
    tx_id: Annotated[Text | None, Query(alias="txId", max_length=200)] = None,
    payment_token: Annotated[PaymentToken | None, Query(alias="paymentToken")] = None,
    code: Annotated[
        str | None,
        Query(description="PortOne's error code, when the payment window failed"),
    ] = None,
    message: Annotated[
        str | None,
        Query(description="PortOne's error message: never shown, PortOne is asked instead"),
    ] = None,
) -> Response:
    """The redirect flow's landing, as PortOne's redirect calls it: the payment is verified
    as `/payments/complete` verifies it, then the customer is sent to the order's
    `returnUrl` with `orderId`, `paymentId` and `status` (the order's status after
    verification; `FAILED` when it was not paid and the query had a `code`, which is then
    passed on if it is at most 64 of `A-Z`, `0-9` and `_`, with PortOne's own failure
    message)."""
    landing = await door.land(payment_id, code=code, payment_token=payment_token, tx_id=tx_id)
    if landing.location is not None:
        return RedirectResponse(landing.location, status_code=303)
    return HTMLResponse(landing.page, status_code=landing.status)


def _header(name: str, description: str, **schema: object) -> dict[str, object]:
    return {
        "name": name,
        "in": "header",
        "required": True,
        "description": description,
        "schema": {"type": "string", **schema},
    }


SIGNATURE_HEADERS = [
    _header("webhook-id", "The delivery's id", pattern="^[\\x21-\\x7e]{1,255}$"),
    _header("webhook-timestamp", "Seconds since the epoch", pattern="^[0-9]{1,12}$"),
    _header(
        "webhook-signature",
        "`v1,<base64 HMAC-SHA256>` entries separated by spaces, at most"
        f" {MAX_SIGNATURES}; only PortOne, holding the secret, can make one",
        maxLength=MAX_SIGNATURE_HEADER,
    ),
]
"""Standard Webhooks' headers, as the OpenAPI document states them (`app.standard_webhooks`
checks them)."""


class WebhookAck(ApiModel):
    outcome: Outcome


@router.post(
    "/webhooks/portone",
    response_model=WebhookAck,
    responses=problem_responses(
        WebhookSignatureInvalid, WebhookPayloadInvalid, PayloadTooLarge, 502, 503
    ),
    openapi_extra={
        "parameters": SIGNATURE_HEADERS,
        "requestBody": {
            "required": True,
            "description": "A PortOne webhook, signed the Standard Webhooks way",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
    },
)
async def portone_webhook(request: Request) -> Response:
    """PortOne's notification; its claims are checked against a fresh fetch, never trusted."""
    outcome = await shared(request).inbox.receive(request.headers, await request.body())
    return WebhookAck.model_construct(outcome=outcome).answer()
