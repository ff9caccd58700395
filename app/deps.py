"""Typed dependencies: each route asks for what it uses (async: a plain `def` would cost a
thread hop)."""

from __future__ import annotations

import hmac
from typing import Annotated

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
from app.services import Services


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_settings(request: Request) -> Settings:
    return _services(request).settings


async def get_orders(request: Request) -> Orders:
    return _services(request).orders


async def get_completion(request: Request) -> Completion:
    return _services(request).completion


async def get_inbox(request: Request) -> WebhookInbox:
    return _services(request).inbox


async def get_refunds(request: Request) -> Refunds:
    return _services(request).refunds


async def get_outbox_events(request: Request) -> OutboxEvents:
    return _services(request).outbox_events


async def get_sync(request: Request) -> PaymentSync:
    return _services(request).sync


async def get_health(request: Request) -> Health:
    return _services(request).health


SettingsDep = Annotated[Settings, Depends(get_settings)]
OrdersDep = Annotated[Orders, Depends(get_orders)]
CompletionDep = Annotated[Completion, Depends(get_completion)]
InboxDep = Annotated[WebhookInbox, Depends(get_inbox)]
RefundsDep = Annotated[Refunds, Depends(get_refunds)]
OutboxEventsDep = Annotated[OutboxEvents, Depends(get_outbox_events)]
SyncDep = Annotated[PaymentSync, Depends(get_sync)]
HealthDep = Annotated[Health, Depends(get_health)]


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
