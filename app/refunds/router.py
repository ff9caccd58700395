"""The internal refund endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.deps import IdempotencyKey, Internal, RefundsDep, SettingsDep
from app.errors import (
    IdempotencyKeyReused,
    OrderNotFound,
    OrderNotRefundable,
    PayloadTooLarge,
    RefundConflict,
    RefundExceedsBalance,
    RefundFailed,
    RefundInProgress,
    Unauthorized,
)
from app.orders.router import OrderId
from app.orders.schemas import OrderOut
from app.problems import problem_responses
from app.refunds.schemas import RefundRequest

router = APIRouter(tags=["orders"], dependencies=[Internal])


@router.post(
    "/orders/{order_id}/refund",
    responses={
        202: {"model": OrderOut, "description": "PortOne holds the refund REQUESTED"},
        **problem_responses(
            Unauthorized,
            OrderNotFound,
            OrderNotRefundable,
            PayloadTooLarge,
            RefundExceedsBalance,
            IdempotencyKeyReused,
            RefundInProgress,
            RefundConflict,
            RefundFailed,
            PayloadTooLarge,
            503,
        ),
    },
)
async def refund_order(
    order_id: OrderId,
    body: RefundRequest,
    refunds: RefundsDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> OrderOut:
    """Cancel all that is left, or `amount`, at PortOne; a repeated key replays the first result.

    200 once PortOne's cancellation SUCCEEDED; 202 while PortOne holds it REQUESTED (the
    refund is settled later, by PortOne's webhook or the reconciler, and listed in
    `refunds` meanwhile); 502 REFUND_FAILED when PortOne refused it or it FAILED.
    """
    outcome = await refunds.refund(order_id, body, idempotency_key=idempotency_key)
    if not outcome.settled:
        response.status_code = status.HTTP_202_ACCEPTED
    return OrderOut.present(outcome.order, settings)
