"""Looking at the outbox, and sending an event again."""

from __future__ import annotations

from sqlalchemy import func, select, update

from app.db import Sessions
from app.errors import EventNotFound
from app.events.models import DeliveryState, OutboxEvent


async def list_events(sessions: Sessions, state: DeliveryState, limit: int) -> list[OutboxEvent]:
    query = select(OutboxEvent).where(OutboxEvent.state == state).order_by(OutboxEvent.seq)
    async with sessions() as session:
        return list(await session.scalars(query.limit(limit)))


async def redeliver(sessions: Sessions, event_id: str) -> OutboxEvent:
    """Due now, whatever its state; the delivery worker sends it on its next pass."""
    statement = (
        update(OutboxEvent)
        .where(OutboxEvent.id == event_id)
        .values(state=DeliveryState.PENDING, next_attempt_at=func.now())
        .returning(OutboxEvent)
    )
    async with sessions() as session, session.begin():
        event = await session.scalar(statement)
    if event is None:
        raise EventNotFound(f"no order event {event_id}")
    return event
