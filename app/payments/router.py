"""Public payment endpoints: the browser's completion call."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import Field

from app.deps import ServicesDep
from app.errors import (
    OrderNotFound,
    PaymentNotPaid,
    PaymentRejected,
    WebhookPayloadInvalid,
    WebhookSignatureInvalid,
)
from app.orders.presenter import present_order
from app.orders.schemas import OrderOut
from app.payments.inbox import Outcome
from app.payments.service import complete_payment
from app.problems import problem_responses
from app.schemas import ApiModel, Text, json_response

router = APIRouter(tags=["payments"])


class CompleteRequest(ApiModel):
    """What the browser sends after `PortOne.requestPayment()` resolved without `code`."""

    payment_id: Annotated[Text, Field(min_length=1, max_length=200)]
    tx_id: Annotated[Text, Field(max_length=200)] | None = None


@router.post(
    "/payments/complete",
    response_model=OrderOut,
    responses=problem_responses(OrderNotFound, PaymentNotPaid, PaymentRejected, 502, 503),
)
async def complete(body: CompleteRequest, services: ServicesDep) -> Response:
    order = await complete_payment(services.engine, services.sync, body.payment_id)
    return json_response(present_order(order, services.settings))


class WebhookAck(ApiModel):
    outcome: Outcome


@router.post(
    "/webhooks/portone",
    response_model=WebhookAck,
    responses=problem_responses(WebhookSignatureInvalid, WebhookPayloadInvalid, 502, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "A PortOne webhook, signed the Standard Webhooks way",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def portone_webhook(request: Request, services: ServicesDep) -> Response:
    """PortOne's notification; its claims are checked against a fresh fetch, never trusted."""
    outcome = await services.inbox.receive(request.headers, await request.body())
    return json_response(WebhookAck(outcome=outcome))
