"""Internal endpoints over the order-event outbox."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from app.deps import ServicesDep, require_internal_token
from app.errors import EventNotFound, Unauthorized
from app.events import service
from app.events.models import DeliveryState, OutboxEvent
from app.events.schemas import OrderEventDeliveries, OrderEventDelivery
from app.problems import problem_responses
from app.schemas import Text

router = APIRouter(tags=["order events"], dependencies=[Depends(require_internal_token)])


def _present(event: OutboxEvent) -> OrderEventDelivery:
    return OrderEventDelivery(
        event_id=event.id,
        order_id=event.order_id,
        type=event.type,
        state=event.state,
        attempts=event.attempts,
        last_error=event.last_error,
        next_attempt_at=event.next_attempt_at,
        created_at=event.created_at,
        delivered_at=event.delivered_at,
        payload=event.payload,
    )


@router.get("/order-events", responses=problem_responses(Unauthorized, 503))
async def list_order_events(
    services: ServicesDep,
    state: Annotated[DeliveryState, Query(alias="status")] = DeliveryState.FAILED,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> OrderEventDeliveries:
    """Events by delivery state, oldest first: `failed` lists what has not gone through."""
    events = await service.list_events(services.sessions, state, limit)
    return OrderEventDeliveries(events=[_present(event) for event in events])


@router.post(
    "/order-events/{event_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(Unauthorized, EventNotFound, 503),
)
async def redeliver_order_event(
    event_id: Annotated[Text, Path(min_length=1, max_length=40)], services: ServicesDep
) -> OrderEventDelivery:
    """Send an event again (same id), on the delivery worker's next pass."""
    return _present(await service.redeliver(services.sessions, event_id))
