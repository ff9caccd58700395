"""Internal order endpoints, for the shop's other services."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from app.deps import IdempotencyKey, Internal, OrdersDep, SettingsDep
from app.errors import (
    IdempotencyKeyReused,
    OrderNotCancellable,
    OrderNotFound,
    PayloadTooLarge,
    Unauthorized,
)
from app.orders.cursor import decode_cursor, encode_cursor
from app.orders.schemas import HistoryEntryOut, OrderCreate, OrderHistory, OrderOut, OrderPage
from app.orders.status import OrderStatus
from app.problems import problem_responses
from app.text import Text
from app.times import UtcDatetime

router = APIRouter(tags=["orders"], dependencies=[Internal])

OrderId = Annotated[Text, Path(min_length=1, max_length=40)]


@router.post(
    "/orders",
    status_code=201,
    responses={
        200: {
            "model": OrderOut,
            "description": "The order first created with this Idempotency-Key",
        },
        **problem_responses(Unauthorized, IdempotencyKeyReused, PayloadTooLarge, 502, 503),
    },
)
async def create_order(
    body: OrderCreate,
    orders: OrdersDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> OrderOut:
    order, created = await orders.create(body, idempotency_key=idempotency_key)
    if not created:
        response.status_code = 200
    return OrderOut.present(order, settings)


@router.get("/orders", responses=problem_responses(Unauthorized, 503))
async def list_orders(
    orders: OrdersDep,
    settings: SettingsDep,
    status: Annotated[list[OrderStatus], Query()] = [],  # noqa: B006 (FastAPI copies it)
    updated_after: Annotated[UtcDatetime | None, Query(alias="updatedAfter")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern="^[A-Za-z0-9_-]*$",
            description="Opaque: the `nextCursor` of a previous page, and nothing else; any"
            " other value is answered 422 VALIDATION_FAILED.",
        ),
    ] = None,
) -> OrderPage:
    """Orders by last update then id: page with `nextCursor` through everything that changed."""
    page = await orders.changed(
        statuses=status,
        updated_after=updated_after,
        after=decode_cursor(cursor) if cursor else None,
        limit=limit,
    )
    return OrderPage(
        orders=[OrderOut.present(order, settings) for order in page],
        next_cursor=encode_cursor(page[-1]) if len(page) == limit else None,
    )


@router.get("/orders/{order_id}", responses=problem_responses(Unauthorized, OrderNotFound, 503))
async def get_order(order_id: OrderId, orders: OrdersDep, settings: SettingsDep) -> OrderOut:
    return OrderOut.present(await orders.get(order_id), settings)


@router.post(
    "/orders/{order_id}/cancel",
    responses=problem_responses(Unauthorized, OrderNotFound, OrderNotCancellable, 503),
)
async def cancel_order(order_id: OrderId, orders: OrdersDep, settings: SettingsDep) -> OrderOut:
    """Close an order that has taken no money (sold out, abandoned, replaced): PENDING or
    AWAITING_DEPOSIT become CANCELLED, and an issued virtual account is closed at PortOne.
    An order already CANCELLED is answered as it is. From then on the order confirms
    nothing, and a payment that still arrives for it is rejected (`ORDER_CLOSED`) and
    given back."""
    return OrderOut.present(await orders.cancel(order_id), settings)


@router.get(
    "/orders/{order_id}/history", responses=problem_responses(Unauthorized, OrderNotFound, 503)
)
async def get_order_history(order_id: OrderId, orders: OrdersDep) -> OrderHistory:
    """The order's history: every look at its payment, oldest first (append-only)."""
    entries = await orders.history(order_id)
    return OrderHistory(history=[HistoryEntryOut.model_validate(dict(e)) for e in entries])
