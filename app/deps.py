"""Typed dependencies: each route asks for what it uses (async: a plain `def` would cost a
thread hop)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from app.config import Settings
from app.errors import Unauthorized
from app.orders.service import Orders
from app.outbox.service import OutboxEvents
from app.payments.complete import Completion
from app.payments.inbox import WebhookInbox
from app.payments.sync import PaymentSync
from app.readiness import Health
from app.refunds.service import Refunds


def _service(name: str) -> Callable[[Request], Awaitable[Any]]:
    """The dependency that hands a route one part of what the process shares."""

    async def get(request: Request) -> Any:
        return getattr(request.app.state.services, name)

    return get


SettingsDep = Annotated[Settings, Depends(_service("settings"))]
OrdersDep = Annotated[Orders, Depends(_service("orders"))]
CompletionDep = Annotated[Completion, Depends(_service("completion"))]
InboxDep = Annotated[WebhookInbox, Depends(_service("inbox"))]
RefundsDep = Annotated[Refunds, Depends(_service("refunds"))]
OutboxEventsDep = Annotated[OutboxEvents, Depends(_service("outbox_events"))]
SyncDep = Annotated[PaymentSync, Depends(_service("sync"))]
HealthDep = Annotated[Health, Depends(_service("health"))]


async def require_internal_token(
    settings: SettingsDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    token = settings.internal_api_token
    assert token is not None
    scheme, _, presented = (authorization or "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), expected):
        raise Unauthorized("send Authorization: Bearer <INTERNAL_API_TOKEN>")


IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
]
