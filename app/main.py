"""The ASGI application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import health, problems
from app.config import Settings, load_settings
from app.orders.router import router as orders_router
from app.payments.router import router as payments_router
from app.reconcile import run_forever
from app.refunds.router import router as refunds_router
from app.services import open_services


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(settings) as services:
            app.state.services = services
            stopping = asyncio.Event()
            loop = None
            if settings.reconcile_interval_seconds > 0:
                reconciler = services.reconciler(stopping)
                loop = asyncio.create_task(
                    run_forever(reconciler, settings.reconcile_interval_seconds, stopping)
                )
            try:
                yield
            finally:
                stopping.set()
                if loop is not None:
                    await loop

    app = FastAPI(
        title="PortOne payment verification",
        version="0.1.0",
        summary="Verifies PortOne V2 payments against the shop's orders before anything ships.",
        lifespan=lifespan,
    )
    problems.install(app)
    app.include_router(payments_router)
    app.include_router(orders_router)
    app.include_router(refunds_router)
    app.include_router(health.router)
    return app
