"""Fixtures of the order-event tests: a receiver, and the app sending to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
import respx
from fastapi import FastAPI

from app import main as app_main
from app.config import Settings
from tests.outbox.delivery.shop import (
    Receiver,
    events_settings,
    running,
)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture(autouse=True)
def _local_http_is_real(portone: respx.MockRouter) -> None:
    """respx mocks every httpx request: let the ones to 127.0.0.1 (receiver, services) out."""
    portone.route(host="127.0.0.1").pass_through()


@pytest.fixture
def settings(database_url: str, receiver: Receiver) -> Settings:
    return events_settings(database_url, receiver.url)


@pytest.fixture
async def app(
    settings: Settings, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FastAPI]:
    """The app with its delivery loop idle: these tests run the delivery passes themselves."""
    monkeypatch.setattr(app_main, "EVENT_DELIVERY_INTERVAL", 3600.0)
    async with running(settings) as application:
        yield application


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client
