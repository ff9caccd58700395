"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import func, select, text

from app import metrics
from app.deps import ServicesDep
from app.errors import DatabaseUnavailable
from app.orders.models import CompensationStatus, Order
from app.payments.models import DeliveryStatus, WebhookDelivery
from app.problems import problem_responses

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}


@router.get("/readyz", responses=problem_responses(DatabaseUnavailable))
async def readyz(services: ServicesDep) -> dict[str, str]:
    """200 when the database answers and its schema is the one this code expects."""
    async with services.engine.connect() as connection:
        revision = await connection.scalar(text("SELECT version_num FROM alembic_version"))
    expected = services.migration_head
    if expected is not None and revision != expected:
        raise DatabaseUnavailable(
            f"database schema is at {revision}, the code needs {expected}: run alembic upgrade head"
        )
    return {"status": "ready"}


@router.get("/metrics", response_class=Response)
async def prometheus(services: ServicesDep) -> Response:
    """Prometheus text; the stuck-work gauges are read from the database at scrape time."""
    async with services.sessions() as session:
        owed = await session.scalar(
            select(func.count())
            .select_from(Order)
            .where(Order.compensation_status == CompensationStatus.OWED)
        )
        oldest = await session.scalar(
            select(func.extract("epoch", func.now() - func.min(WebhookDelivery.received_at))).where(
                WebhookDelivery.status.in_([DeliveryStatus.PROCESSING, DeliveryStatus.FAILED])
            )
        )
    metrics.compensations_owed.set(owed or 0)
    metrics.oldest_unprocessed_webhook_age.set(float(oldest or 0))
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
