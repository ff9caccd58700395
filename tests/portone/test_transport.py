"""The production transport (httpx over aiohttp) against a real HTTP server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from app.portone.client import PortOneClient, new_http_client
from app.portone.errors import PaymentNotFound, PortOneUnavailable
from tests.live_server import free_port, serving
from tests.portone_payloads import STORE_ID, payment_body

SECRET = "transport-secret"


def _portone_app() -> FastAPI:
    app = FastAPI()

    @app.get("/payments/{payment_id:path}")
    async def payment(payment_id: str, request: Request) -> Response:
        if request.headers.get("authorization") != f"PortOne {SECRET}":
            return Response(status_code=401)
        if payment_id == "slow":
            await asyncio.sleep(2)
        if payment_id == "missing":
            return Response(
                '{"type":"PAYMENT_NOT_FOUND","message":"없음"}', 404, media_type="application/json"
            )
        return Response(json.dumps(payment_body(payment_id)), media_type="application/json")

    return app


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serving(_portone_app()) as url:
        yield url


@pytest.fixture
async def portone(server: str) -> AsyncIterator[PortOneClient]:
    http = new_http_client(server, SECRET)  # the default (production) transport
    async with http:
        yield PortOneClient(http, store_id=STORE_ID)


async def test_reads_a_payment_through_aiohttp(portone: PortOneClient) -> None:
    payment = await portone.get_payment("pay/with slash")

    assert payment.id == "pay/with slash"
    assert payment.status == "PAID"


async def test_typed_errors_survive_the_transport(portone: PortOneClient) -> None:
    with pytest.raises(PaymentNotFound):
        await portone.get_payment("missing")


async def test_timeouts_and_refused_connections_are_unavailable() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with new_http_client(closed, SECRET) as http:
        with pytest.raises(PortOneUnavailable):
            await PortOneClient(http, store_id=STORE_ID).get_payment("any")


async def test_a_slow_portone_times_out(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.portone import client

    monkeypatch.setattr(client, "TIMEOUT", httpx.Timeout(0.3))
    async with new_http_client(server, SECRET) as http:
        with pytest.raises(PortOneUnavailable, match="timed out"):
            await PortOneClient(http, store_id=STORE_ID).get_payment("slow")
