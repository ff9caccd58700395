"""The internal refund endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.deps import IdempotencyKey, RefundsDep, SettingsDep, require_internal_token
from app.errors import (
    IdempotencyKeyReused,
    OrderNotFound,
    OrderNotRefundable,
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

router = APIRouter(tags=["orders"], dependencies=[Depends(require_internal_token)])


@router.post(
    "/orders/{order_id}/refund",
    responses=problem_responses(
        Unauthorized,
        OrderNotFound,
        OrderNotRefundable,
        RefundExceedsBalance,
        IdempotencyKeyReused,
        RefundInProgress,
        RefundConflict,
        RefundFailed,
        503,
    ),
)
async def refund_order(
    order_id: OrderId,
    body: RefundRequest,
    refunds: RefundsDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> OrderOut:
    """Cancel all that is left, or `amount`, at PortOne; a repeated key replays the first result."""
    order = await refunds.refund(order_id, body, idempotency_key=idempotency_key)
    return OrderOut.present(order, settings)
