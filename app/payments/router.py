"""Public payment endpoints: the browser's completion call, and PortOne's webhooks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import Field

from app.deps import CompletionDep, InboxDep, SettingsDep
from app.errors import (
    OrderNotFound,
    PaymentNotPaid,
    PaymentRejected,
    WebhookPayloadInvalid,
    WebhookSignatureInvalid,
)
from app.orders.schemas import OrderOut
from app.payments.inbox import Outcome
from app.problems import problem_responses
from app.schemas import ApiModel
from app.text import Text

router = APIRouter(tags=["payments"])


class CompleteRequest(ApiModel):
    """What the browser sends after `PortOne.requestPayment()` resolved without `code`."""

    payment_id: Annotated[Text, Field(min_length=1, max_length=200)]
    tx_id: Annotated[Text, Field(max_length=200)] | None = None


@router.post(
    "/payments/complete",
    responses=problem_responses(OrderNotFound, PaymentNotPaid, PaymentRejected, 502, 503),
)
async def complete(
    body: CompleteRequest, completion: CompletionDep, settings: SettingsDep
) -> OrderOut:
    order = await completion.complete(body.payment_id)
    return OrderOut.present(order, settings)


class WebhookAck(ApiModel):
    outcome: Outcome


@router.post(
    "/webhooks/portone",
    responses=problem_responses(WebhookSignatureInvalid, WebhookPayloadInvalid, 502, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "A PortOne webhook, signed the Standard Webhooks way",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def portone_webhook(request: Request, inbox: InboxDep) -> WebhookAck:
    """PortOne's notification; its claims are checked against a fresh fetch, never trusted."""
    return WebhookAck(outcome=await inbox.receive(request.headers, await request.body()))
