"""Internal order endpoints, for the shop's other services."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from app.deps import IdempotencyKey, ServicesDep, require_internal_token
from app.errors import IdempotencyKeyReused, OrderNotFound, Unauthorized
from app.orders import service
from app.orders.cursor import UtcDatetime, decode_cursor, encode_cursor
from app.orders.models import OrderStatus
from app.orders.presenter import present_order
from app.orders.schemas import OrderCreate, OrderEventOut, OrderEvents, OrderOut, OrderPage
from app.problems import problem_responses
from app.schemas import Text

router = APIRouter(tags=["orders"], dependencies=[Depends(require_internal_token)])

OrderId = Annotated[Text, Path(min_length=1, max_length=40)]


@router.post(
    "/orders",
    status_code=201,
    responses={
        200: {
            "model": OrderOut,
            "description": "The order first created with this Idempotency-Key",
        },
        **problem_responses(Unauthorized, IdempotencyKeyReused, 502, 503),
    },
)
async def create_order(
    body: OrderCreate,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> OrderOut:
    order, created = await service.create_order(
        services.sessions,
        body,
        idempotency_key=idempotency_key,
        pre_register=services.pre_registration,
    )
    if not created:
        response.status_code = 200
    return present_order(order, services.settings)


@router.get("/orders", responses=problem_responses(Unauthorized, 503))
async def list_orders(
    services: ServicesDep,
    status: Annotated[list[OrderStatus], Query()] = [],  # noqa: B006 (FastAPI copies it)
    updated_after: Annotated[UtcDatetime | None, Query(alias="updatedAfter")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> OrderPage:
    """Orders by last update then id: page with `nextCursor` through everything that changed."""
    orders = await service.changed_orders(
        services.sessions,
        statuses=status,
        updated_after=updated_after,
        after=decode_cursor(cursor) if cursor else None,
        limit=limit,
    )
    next_cursor = encode_cursor(orders[-1]) if len(orders) == limit else None
    return OrderPage(
        orders=[present_order(order, services.settings) for order in orders],
        next_cursor=next_cursor,
    )


@router.get("/orders/{order_id}", responses=problem_responses(Unauthorized, OrderNotFound, 503))
async def get_order(order_id: OrderId, services: ServicesDep) -> OrderOut:
    order = await service.get_order(services.sessions, order_id)
    return present_order(order, services.settings)


@router.get(
    "/orders/{order_id}/events", responses=problem_responses(Unauthorized, OrderNotFound, 503)
)
async def get_order_events(order_id: OrderId, services: ServicesDep) -> OrderEvents:
    events = await service.list_events(services.sessions, order_id)
    return OrderEvents(
        events=[OrderEventOut.model_validate(e, from_attributes=True) for e in events]
    )
