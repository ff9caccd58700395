"""The ASGI application."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Coroutine, Iterable
from contextlib import asynccontextmanager

import httpx
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from app import docs, health, logs, problems
from app.background import every
from app.config import Settings, load_settings
from app.deps import INTERNAL
from app.middleware import BodyLimit, InternalToken, PublicCors, RequestContext
from app.orders.router import router as orders_router
from app.outbox.delivery import new_events_client
from app.outbox.router import router as outbox_router
from app.payments.router import router as payments_router
from app.refunds.router import router as refunds_router
from app.wiring import Services, open_services

EVENT_DELIVERY_INTERVAL = 1.0
ROUTERS = (payments_router, orders_router, refunds_router, outbox_router, health.router)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _open(app, settings) as services, new_events_client() as events_http:
            app.state.services = services
            await services.readiness.report()
            stopping = asyncio.Event()
            loops = _background(services, events_http, stopping)
            running = [asyncio.create_task(loop) for loop in loops]
            try:
                yield
            finally:
                # In-flight requests have finished; the loops stop between orders.
                stopping.set()
                await asyncio.gather(*running)

    app = FastAPI(
        title="PortOne payment verification",
        version="0.1.0",
        summary="Verifies PortOne V2 payments against the shop's orders before anything ships.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        # A redirect to the slash-less path would be built from the request's Host.
        redirect_slashes=False,
        # operationId: the route's function name, which clients generated from the document
        # name their methods after (`create_order`, not `create_order_orders_post`).
        generate_unique_id_function=lambda route: route.name,
        # The service's metrics are Prometheus's and its logs its own; FastAPI's OpenTelemetry
        # hooks would otherwise look for a configured provider on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    docs.install(app)
    problems.install(app)
    for router in ROUTERS:
        app.include_router(router)
    if settings.portone_mode == "sandbox":
        from app import sandbox

        sandbox.install(app)
    assert settings.internal_api_token is not None
    app.add_middleware(BodyLimit)
    app.add_middleware(
        InternalToken,
        token=settings.internal_api_token.get_secret_value(),
        segments=internal_segments(ROUTERS),
    )
    app.add_middleware(PublicCors, origins=settings.cors_allow_origins)
    app.add_middleware(RequestContext)
    return app


def internal_segments(routers: Iterable[APIRouter]) -> frozenset[str]:
    """The first path segments of the routes that declare the internal token, which
    `InternalToken` guards whole; no public route may share one."""
    routes = [route for router in routers for route in router.routes if isinstance(route, APIRoute)]
    internal = {_segment(route) for route in routes if _declares_token(route)}
    if public := {_segment(route) for route in routes if not _declares_token(route)} & internal:
        raise RuntimeError(f"public routes under internal paths: {sorted(public)}")
    return frozenset(internal)


def _segment(route: APIRoute) -> str:
    return route.path.split("/", 2)[1]


def _declares_token(route: APIRoute) -> bool:
    return any(dependency.call is INTERNAL for dependency in route.dependant.dependencies)


# Collect the young generation once 5,000 more objects have been made than freed. The
# default, 700, collects every few requests; a much larger threshold makes each collection
# long, since its pause grows with the reference cycles it frees: with httpx's ~43 cyclic
# objects per PortOne read, 50,000 paused the loop ~40 ms every thousand completions, which
# was the p99 (bench/README.md, "The tail"). The PortOne client unlinks those cycles.
GC_THRESHOLD = (5_000, 10, 10)


def frozen(app: FastAPI) -> FastAPI:
    """`app`, with the objects made so far out of the garbage collector's way.

    A full collection walks every object the imports made, a pause long enough to be the
    p99 under load; none of them is ever garbage.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    return app


def worker_app() -> FastAPI:
    """The app in each of several worker processes (`python -m app serve --workers N`)."""
    settings = load_settings()
    logs.configure(settings.log_level)
    return frozen(create_app(settings))


def _background(
    services: Services, events_http: httpx.AsyncClient, stopping: asyncio.Event
) -> list[Coroutine[None, None, None]]:
    """The reconciler and the order-event delivery, each where it is configured."""
    loops = []
    if (interval := services.settings.reconcile_interval_seconds) > 0:
        run_pass = services.reconciler(stopping).run_pass
        loops.append(every(interval, stopping, run_pass, "reconciler pass"))
    if (delivery := services.event_delivery(events_http)) is not None:
        deliver = delivery.deliver_due
        loops.append(every(EVENT_DELIVERY_INTERVAL, stopping, deliver, "event delivery"))
    return loops


@asynccontextmanager
async def _open(app: FastAPI, settings: Settings) -> AsyncIterator[Services]:
    if settings.portone_mode != "sandbox":
        async with open_services(settings) as services:
            yield services
        return
    from app import sandbox

    # Sandbox mode reaches only its own emulator: the configuration refuses a PortOne URL.
    async with (
        open_services(
            settings,
            portone_base_url=sandbox.EMULATOR_BASE_URL,
            portone_transport=sandbox.in_process(app),
        ) as services,
        sandbox.running(app, settings, services.database),
    ):
        yield services
