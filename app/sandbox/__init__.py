"""Sandbox mode: a PortOne emulator, its customer and console, and a demo checkout page.

Mounted only when PORTONE_MODE=sandbox; live code never imports this package. The
service reaches the emulator through its ordinary PortOne client, in process.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from app.config import Settings
from app.db import Database
from app.problems import problem
from app.sandbox import control, delivery, demo, portone_api
from app.sandbox.emulator import Emulator, EmulatorError
from app.sandbox.state import Sandbox
from app.sandbox.store import SandboxStore

logger = logging.getLogger(__name__)

IN_PROCESS = "http://sandbox.internal"
EMULATOR_BASE_URL = f"{IN_PROCESS}{portone_api.PREFIX}"


def install(app: FastAPI) -> None:
    app.include_router(portone_api.router, prefix=portone_api.PREFIX)
    app.include_router(control.router)
    app.include_router(demo.router)
    app.add_api_route("/", demo.demo_page, include_in_schema=False, name="demo_page")
    app.add_api_route("/favicon.ico", demo.favicon, include_in_schema=False)
    app.mount(demo.ASSETS, StaticFiles(packages=[(__name__, "assets")]), name="demo_assets")
    app.add_exception_handler(EmulatorError, _emulator_error)


def in_process(app: FastAPI) -> httpx.ASGITransport:
    return httpx.ASGITransport(app=app)


@asynccontextmanager
async def running(app: FastAPI, settings: Settings, database: Database) -> AsyncIterator[Sandbox]:
    client = httpx.AsyncClient(transport=in_process(app), base_url=IN_PROCESS, timeout=30.0)
    sender = delivery.WebhookSender(
        client, settings.webhook_keys[0], settings.store_id, delay=delivery.DELAY
    )
    store = SandboxStore(database)
    emulator = Emulator(settings.store_id)
    try:
        kept = await store.load(emulator)
    except Exception as exc:  # never migrated, or away: /readyz says which
        logger.warning("sandbox: no payments kept from before could be read (%s)", exc)
        kept = 0
    sandbox = Sandbox(emulator, sender, settings.api_secret, store)
    app.state.sandbox = sandbox
    sender.start()
    logger.warning(
        "SANDBOX MODE: PortOne is emulated in this process (%d payments kept from before); "
        "no real payment is made",
        kept,
    )
    for name, value in settings.generated_for_sandbox().items():
        print(f"sandbox: {name}={value}", flush=True)
    try:
        yield sandbox
    finally:
        await sender.stop()
        await client.aclose()


async def _emulator_error(request: Request, exc: Exception) -> JSONResponse:
    """PortOne's shape from the emulated API; problem+json from the control endpoints."""
    assert isinstance(exc, EmulatorError)
    if request.url.path.startswith(portone_api.PREFIX):
        return portone_api.portone_error(exc)
    return problem(exc.status, exc.type, "The emulated PortOne refused", exc.message)
