"""The ASGI application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from app import health, problems
from app.background import every
from app.config import Settings, load_settings
from app.events.delivery import new_events_client
from app.events.router import router as events_router
from app.middleware import PublicCors, RequestContext
from app.orders.router import router as orders_router
from app.payments.router import router as payments_router
from app.refunds.router import router as refunds_router
from app.services import Services, open_services

EVENT_DELIVERY_INTERVAL = 1.0


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            app.state.services = await stack.enter_async_context(_open(app, settings))
            services: Services = app.state.services
            stopping = asyncio.Event()
            loops = []
            if (interval := settings.reconcile_interval_seconds) > 0:
                run_pass = services.reconciler(stopping).run_pass
                loops.append(every(interval, stopping, run_pass, "reconciler pass"))
            http = await stack.enter_async_context(new_events_client())
            if (delivery := services.event_delivery(http)) is not None:
                deliver = delivery.deliver_due
                loops.append(every(EVENT_DELIVERY_INTERVAL, stopping, deliver, "event delivery"))
            running = [asyncio.create_task(loop) for loop in loops]
            try:
                yield
            finally:
                # Background loops stop between orders; in-flight requests already finished.
                stopping.set()
                await asyncio.gather(*running)

    app = FastAPI(
        title="PortOne payment verification",
        version="0.1.0",
        summary="Verifies PortOne V2 payments against the shop's orders before anything ships.",
        lifespan=lifespan,
    )
    problems.install(app)
    app.add_middleware(PublicCors, origins=settings.cors_allow_origins)
    app.add_middleware(RequestContext)
    app.include_router(payments_router)
    app.include_router(orders_router)
    app.include_router(refunds_router)
    app.include_router(events_router)
    app.include_router(health.router)
    if settings.portone_mode == "sandbox":
        from app import sandbox

        sandbox.install(app)
    return app


@asynccontextmanager
async def _open(app: FastAPI, settings: Settings) -> AsyncIterator[Services]:
    if settings.portone_mode != "sandbox":
        async with open_services(settings) as services:
            yield services
        return
    from app import sandbox

    emulated = settings.emulated
    async with (
        open_services(
            settings,
            portone_base_url=sandbox.EMULATOR_BASE_URL if emulated else None,
            portone_transport=sandbox.in_process(app) if emulated else None,
        ) as services,
        sandbox.running(app, settings),
    ):
        yield services
