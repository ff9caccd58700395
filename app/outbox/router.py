"""Internal endpoints over the order-event outbox."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from pydantic import Field

from app.deps import Internal, OutboxEventsDep
from app.errors import EventNotFound, PayloadTooLarge, Unauthorized
from app.outbox.event import EventStatus
from app.outbox.schemas import OrderEventDeliveries, OrderEventDelivery
from app.problems import problem_responses
from app.schemas import ApiModel, StrictApiModel
from app.text import Text

router = APIRouter(tags=["order events"], dependencies=[Internal])


@router.get("/order-events", responses=problem_responses(Unauthorized, 503))
async def list_order_events(
    outbox: OutboxEventsDep,
    state: Annotated[EventStatus, Query(alias="status")] = EventStatus.FAILED,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> OrderEventDeliveries:
    """Events by delivery state, oldest first: `failed` lists what has not gone through."""
    events = await outbox.by_state(state, limit)
    return OrderEventDeliveries(events=[OrderEventDelivery.present(event) for event in events])


class RedeliverRequest(StrictApiModel):
    order_id: Annotated[Text, Field(min_length=1, max_length=40)] | None = None


class Redelivered(ApiModel):
    redelivered: int


@router.post(
    "/order-events/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(Unauthorized, PayloadTooLarge, 503),
)
async def redeliver_failed_order_events(
    outbox: OutboxEventsDep, body: RedeliverRequest | None = None
) -> Redelivered:
    """Send every failed event again (of one order, or of all), each order's in order: the
    way back after the shop's receiver was down longer than the retries last."""
    order_id = body.order_id if body else None
    return Redelivered(redelivered=await outbox.redeliver_failed(order_id))


@router.post(
    "/order-events/{event_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(Unauthorized, EventNotFound, 503),
)
async def redeliver_order_event(
    event_id: Annotated[Text, Path(min_length=1, max_length=40)], outbox: OutboxEventsDep
) -> OrderEventDelivery:
    """Send an event again (same id), on the delivery worker's next pass."""
    return OrderEventDelivery.present(await outbox.redeliver(event_id))
