"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from app import metrics
from app.deps import ReadinessDep
from app.errors import DatabaseUnavailable
from app.problems import problem_responses

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}


@router.get("/readyz", responses=problem_responses(DatabaseUnavailable))
async def readyz(readiness: ReadinessDep) -> dict[str, str]:
    """200 when the database answers and its schema is the one this code expects; else 503
    DATABASE_UNAVAILABLE with its `reason`: unreachable, credentials refused, never
    migrated, or behind."""
    await readiness.check_ready()
    return {"status": "ready"}


@router.get("/metrics", response_class=Response)
async def prometheus(readiness: ReadinessDep) -> Response:
    """Prometheus text; the stuck-work gauges are read from the database at scrape time."""
    await readiness.refresh_gauges()
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
