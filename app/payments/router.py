"""Public payment endpoints: the browser's completion call."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field

from app.deps import ServicesDep
from app.errors import OrderNotFound, PaymentNotPaid, PaymentRejected
from app.orders.presenter import present_order
from app.orders.schemas import OrderOut
from app.payments.service import complete_payment
from app.problems import problem_responses
from app.schemas import ApiModel

router = APIRouter(tags=["payments"])


class CompleteRequest(ApiModel):
    """What the browser sends after `PortOne.requestPayment()` resolved without `code`."""

    payment_id: Annotated[str, Field(min_length=1, max_length=200)]
    tx_id: Annotated[str, Field(max_length=200)] | None = None


@router.post(
    "/payments/complete",
    responses=problem_responses(OrderNotFound, PaymentNotPaid, PaymentRejected, 502, 503),
)
async def complete(body: CompleteRequest, services: ServicesDep) -> OrderOut:
    order = await complete_payment(services.sessions, services.sync, body.payment_id)
    return present_order(order, services.settings)
