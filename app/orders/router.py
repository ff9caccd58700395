"""Internal order endpoints, for the shop's other services."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from app.deps import IdempotencyKey, ServicesDep, require_internal_token
from app.errors import IdempotencyKeyReused, OrderNotFound, Unauthorized
from app.orders import service
from app.orders.presenter import present_order
from app.orders.schemas import OrderCreate, OrderEventOut, OrderEvents, OrderOut
from app.problems import problem_responses

router = APIRouter(tags=["orders"], dependencies=[Depends(require_internal_token)])

OrderId = Annotated[str, Path(min_length=1, max_length=40)]


@router.post(
    "/orders",
    status_code=status.HTTP_201_CREATED,
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
        response.status_code = status.HTTP_200_OK
    return present_order(order, services.settings)


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
