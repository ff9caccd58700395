"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from app.deps import ServicesDep
from app.errors import DatabaseUnavailable
from app.problems import problem_responses

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses=problem_responses(DatabaseUnavailable))
async def readyz(services: ServicesDep) -> dict[str, str]:
    async with services.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return {"status": "ready"}
