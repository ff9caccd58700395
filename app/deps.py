"""Typed dependencies: each route asks for what it uses (async: a plain `def` would cost a
thread hop); the public doors take theirs from `shared`, without a dependency."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Security
from fastapi.security import HTTPBearer

from app.config import Settings
from app.orders.service import Orders
from app.outbox.service import OutboxEvents
from app.payments.return_door import ReturnDoor
from app.payments.sync import PaymentSync
from app.readiness import Readiness
from app.reconcile import Reconciler
from app.refunds.service import Refunds
from app.wiring import Services


def shared(request: Request) -> Services:
    """What the process shares. The doors anyone can knock on, completions and webhooks,
    take their part from here: FastAPI resolves a dependency anew on every request, at a
    cost these doors pay thousands of times a second (bench/README.md)."""
    services: Services = request.app.state.services
    return services


def _service(name: str) -> Callable[[Request], Awaitable[Any]]:
    """The dependency that hands a route one part of what the process shares."""

    async def get(request: Request) -> Any:
        return getattr(request.app.state.services, name)

    return get


SettingsDep = Annotated[Settings, Depends(_service("settings"))]
OrdersDep = Annotated[Orders, Depends(_service("orders"))]
ReturnDoorDep = Annotated[ReturnDoor, Depends(_service("return_door"))]
RefundsDep = Annotated[Refunds, Depends(_service("refunds"))]
OutboxEventsDep = Annotated[OutboxEvents, Depends(_service("outbox_events"))]
SyncDep = Annotated[PaymentSync, Depends(_service("sync"))]
ReadinessDep = Annotated[Readiness, Depends(_service("readiness"))]


async def _reconciler(request: Request) -> Reconciler:
    return request.app.state.services.reconciler()  # type: ignore[no-any-return]


ReconcilerDep = Annotated[Reconciler, Depends(_reconciler)]


INTERNAL = HTTPBearer(
    scheme_name="InternalToken",
    description="The INTERNAL_API_TOKEN, as `Authorization: Bearer <token>`",
    auto_error=False,
)
"""Marks a route internal: declared in the OpenAPI document (Swagger UI's "Authorize"), and
checked by `app.middleware.InternalToken` before anything reads the request's body."""

Internal = Security(INTERNAL)


IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
]
