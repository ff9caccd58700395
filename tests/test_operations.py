"""What ops rely on: JSON logs without secrets, metrics, readiness, a clean shutdown."""

from __future__ import annotations

import json
import os
import secrets
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import respx
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from app import __main__ as app_cli
from app.main import create_app
from tests.database import admin
from tests.helpers import (
    INTERNAL,
    TOKEN,
    WEBHOOK_SECRET,
    create_order,
    make_settings,
    portone_returns,
    post_webhook,
)
from tests.live_server import service_process
from tests.portone_payloads import STORE_ID, payment_body
from tests.postgres_proxy import PostgresProxy
from tests.problem_details import assert_problem
from tests.processes import free_port

pytestmark = pytest.mark.slow

API_SECRET = "portone-secret-that-must-not-leak"


class _PortOne(BaseHTTPRequestHandler):
    """A PortOne stand-in for a service in another process: every payment is PAID and no
    payment changed lately."""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/payments":
            page = {"items": [], "page": {"number": 0, "size": 100, "totalCount": 0}}
        else:
            page = payment_body(path.rsplit("/", 1)[-1])
        body = json.dumps(page).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def portone_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PortOne)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _service_env(database_url: str, portone_url: str) -> dict[str, str]:
    with_password = make_url(database_url).set(password="database-password-that-must-not-leak")
    return {
        "PATH": os.environ["PATH"],
        "PORTONE_MODE": "live",
        "DATABASE_URL": with_password.render_as_string(hide_password=False),
        "PORTONE_API_BASE_URL": portone_url,
        "PORTONE_API_SECRET": API_SECRET,
        "PORTONE_STORE_ID": STORE_ID,
        "PORTONE_WEBHOOK_SECRETS": WEBHOOK_SECRET,
        "INTERNAL_API_TOKEN": TOKEN,
        "RECONCILE_INTERVAL_SECONDS": "0.2",
        "LOG_LEVEL": "DEBUG",
    }


@pytest.mark.usefixtures("db")
def test_service_logs_json_with_request_ids_never_secrets_and_stops_cleanly_on_sigterm(
    database_url: str, portone_server: str
) -> None:
    env = _service_env(database_url, portone_server)
    with service_process(env) as (base, process):
        with httpx.Client(base_url=base, headers=INTERNAL) as http:
            created = http.post(
                "/orders",
                json={"orderName": "Waffle", "amount": 10_000},
                headers={"X-Request-ID": "req-from-the-shop"},
            )
            assert created.headers["x-request-id"] == "req-from-the-shop"
            order = created.json()
            completed = http.post("/payments/complete", json={"paymentId": order["paymentId"]})
            assert completed.status_code == 200
            assert len(completed.headers["x-request-id"]) == 16
            http.post(
                "/webhooks/portone",
                content=b"{}",
                headers={
                    "webhook-id": "x",
                    "webhook-timestamp": "1",
                    "webhook-signature": "v1,c2Vj",
                },
            )
            time.sleep(0.5)  # a reconciler pass or two
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)

    # uvicorn re-raises the SIGTERM it handled once shutdown is complete.
    assert process.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete." in stdout
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert lines, stderr
    assert all({"at", "level", "logger", "message"} <= line.keys() for line in lines)
    requests = [line for line in lines if line["logger"] == "app.http"]
    assert any(line.get("request_id") == "req-from-the-shop" for line in requests)
    transition = next(line for line in lines if "PENDING -> PAID" in line["message"])
    assert transition["payment_id"] == order["paymentId"]
    assert transition["order_id"] == order["orderId"]
    assert transition["request_id"]
    assert not [line for line in lines if line["level"] in ("error", "critical")]
    for secret in (API_SECRET, TOKEN, WEBHOOK_SECRET, "database-password-that-must-not-leak"):
        assert secret not in stdout + stderr


@pytest.mark.usefixtures("db")
def test_two_workers_serve_one_database_and_count_metrics_together(
    database_url: str, portone_server: str, tmp_path: Path
) -> None:
    env = {**_service_env(database_url, portone_server), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    (tmp_path / "counter_1.db").write_bytes(b"")  # an earlier run's, to be cleared
    with service_process(env, "--workers", "2") as (base, process):
        orders = [
            httpx.post(
                f"{base}/orders", json={"orderName": "W", "amount": 10_000}, headers=INTERNAL
            )
            for _ in range(10)
        ]
        for order in orders:  # a new connection each: either worker may take it
            answer = httpx.post(
                f"{base}/payments/complete", json={"paymentId": order.json()["paymentId"]}
            )
            assert answer.json()["status"] == "PAID"
        exposition = httpx.get(f"{base}/metrics").text
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)

    completions = 'http_requests_total{method="POST",route="/payments/complete",status="200"}'
    assert f"{completions} 10.0" in exposition  # both workers' counts, whichever answered
    worker_pids = {file.stem.rpartition("_")[2] for file in tmp_path.glob("counter_*.db")}
    assert len(worker_pids) == 2  # the supervising process keeps no metrics of its own
    assert "1" not in worker_pids


async def metric(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    text = (await client.get("/metrics")).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") or line.startswith(f"{name} "):
            sample, value = line.rsplit(" ", 1)
            if all(f'{k}="{v}"' in sample for k, v in labels.items()) or not wanted:
                return float(value)
    return 0.0


async def test_metrics_count_verifications_rejections_and_webhooks(
    client: httpx.AsyncClient, portone: respx.MockRouter
) -> None:
    paid_before = await metric(client, "payment_verifications_total", outcome="paid")
    rejected_before = await metric(
        client, "payment_verifications_total", outcome="rejected", reason="AMOUNT_MISMATCH"
    )
    webhooks_before = await metric(client, "webhooks_total", outcome="processed")
    calls_before = await metric(
        client, "portone_requests_total", operation="get_payment", status="200"
    )

    paid = await create_order(client)
    portone_returns(portone, paid["paymentId"])
    await client.post("/payments/complete", json={"paymentId": paid["paymentId"]})
    forged = await create_order(client)
    portone_returns(portone, forged["paymentId"], total=100)
    portone.post(f"/payments/{forged['paymentId']}/cancel").respond(503)
    await client.post("/payments/complete", json={"paymentId": forged["paymentId"]})
    await post_webhook(client, paid["paymentId"])

    assert await metric(client, "payment_verifications_total", outcome="paid") == paid_before + 1
    assert (
        await metric(
            client, "payment_verifications_total", outcome="rejected", reason="AMOUNT_MISMATCH"
        )
        == rejected_before + 1
    )
    assert await metric(client, "webhooks_total", outcome="processed") == webhooks_before + 1
    assert (
        await metric(client, "portone_requests_total", operation="get_payment", status="200")
        == calls_before + 3
    )
    assert await metric(client, "compensations_owed") == 1
    route_label = {"route": "/payments/complete", "method": "POST", "status": "200"}
    assert await metric(client, "http_requests_total", **route_label) >= 1


@pytest.fixture
async def proxied_app(
    database_url: str, db: asyncpg.Connection, proxy: PostgresProxy
) -> AsyncIterator[tuple[FastAPI, PostgresProxy]]:
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    application = create_app(make_settings(url.render_as_string(hide_password=False)))
    async with application.router.lifespan_context(application):
        yield application, proxy


async def test_readiness_follows_the_database_down_and_back(
    proxied_app: tuple[FastAPI, PostgresProxy],
) -> None:
    application, proxy = proxied_app
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
        assert (await client.get("/readyz")).status_code == 200

        await proxy.set_mode("down")
        down = await client.get("/readyz")
        assert down.status_code == 503
        assert down.json()["code"] == "DATABASE_UNAVAILABLE"
        assert "Retry-After" in down.headers
        scraped = await client.get("/metrics")
        assert scraped.status_code == 200
        assert 'http_requests_total{method="GET",route="/readyz",status="503"}' in scraped.text
        created = await client.post(
            "/orders", json={"orderName": "W", "amount": 1}, headers=INTERNAL
        )
        assert created.status_code == 503

        await proxy.set_mode("up")
        for _ in range(3):  # the pool drops the dead connections as it meets them
            if (await client.get("/readyz")).status_code == 200:
                break
        assert (await client.get("/readyz")).status_code == 200
        again = await client.post("/orders", json={"orderName": "W", "amount": 1}, headers=INTERNAL)
        assert again.status_code == 201


async def test_readiness_fails_while_migrations_are_behind(
    client: httpx.AsyncClient, app: FastAPI, db: asyncpg.Connection
) -> None:
    revision = await db.fetchval("SELECT version_num FROM alembic_version")
    await db.execute("UPDATE alembic_version SET version_num = 'older'")
    try:
        behind = await client.get("/readyz")
    finally:
        await db.execute("UPDATE alembic_version SET version_num = $1", revision)

    assert behind.status_code == 503
    assert behind.json()["reason"] == "behind"
    assert "alembic upgrade head" in behind.json()["detail"]
    assert (await client.get("/readyz")).status_code == 200


@pytest.mark.parametrize(
    ("database", "reason"),
    [
        ("never-migrated", "never migrated"),
        ("refused-credentials", "credentials refused"),
        ("nowhere", "unreachable"),
    ],
)
async def test_readiness_says_why_the_database_is_not_ready_and_never_answers_500(
    database_url: str, database: str, reason: str
) -> None:
    server = make_url(database_url)
    name = f"verifier_unmigrated_{secrets.token_hex(4)}"
    url = {
        "never-migrated": server.set(database=name),
        "refused-credentials": server.set(username="nobody_at_all"),
        "nowhere": server.set(host="127.0.0.1", port=free_port()),
    }[database]
    if database == "never-migrated":
        await admin(database_url, f'CREATE DATABASE "{name}"')
    try:
        application = create_app(make_settings(url.render_as_string(hide_password=False)))
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://service.test"
            ) as client:
                ready = await client.get("/readyz")
                order = await client.post(
                    "/orders", json={"orderName": "W", "amount": 1}, headers=INTERNAL
                )
    finally:
        if database == "never-migrated":
            await admin(database_url, f'DROP DATABASE "{name}" WITH (FORCE)')

    problem = assert_problem(ready, 503, "DATABASE_UNAVAILABLE")
    assert problem["reason"] == reason
    assert "Retry-After" in ready.headers
    assert order.status_code != 500, order.text


async def test_cors_allows_configured_origins_on_public_endpoints_only(
    database_url: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(database_url, cors_allow_origins=["https://shop.example"])
    application = create_app(settings)
    preflight = {
        "Origin": "https://shop.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            public = await client.options("/payments/complete", headers=preflight)
            internal = await client.options("/orders", headers=preflight)
            stranger = await client.options(
                "/payments/complete", headers=preflight | {"Origin": "https://evil.example"}
            )

    assert public.status_code == 200
    assert public.headers["access-control-allow-origin"] == "https://shop.example"
    assert "access-control-allow-origin" not in internal.headers
    assert "access-control-allow-origin" not in stranger.headers


def test_sandbox_mode_refuses_several_workers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORTONE_MODE", "sandbox")
    assert app_cli.main(["serve", "--workers", "2"]) == 2
    assert "one worker" in capsys.readouterr().err


def test_sandbox_mode_serves_one_worker_whatever_web_concurrency_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served: list[int] = []
    monkeypatch.setattr(app_cli, "serve_http", lambda *args: served.append(args[-1]))
    monkeypatch.setenv("PORTONE_MODE", "sandbox")
    monkeypatch.setenv("WEB_CONCURRENCY", "4")  # as some platforms set it

    assert app_cli.main(["serve"]) == 0
    assert served == [1]


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_bad_worker_count_is_refused_plainly(
    value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORTONE_MODE", "sandbox")
    monkeypatch.setenv("WEB_CONCURRENCY", value)
    assert app_cli.main(["serve"]) == 2
    assert "WEB_CONCURRENCY" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        app_cli.main(["serve", "--workers", value])
