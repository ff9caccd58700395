"""The processes measured: the PortOne stand-in, the service and the other verifiers."""

from __future__ import annotations

import asyncio
import http.client
import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from bench.harness.settings import BENCH, CONCURRENCY, LOAD_CPU, SERVER_CPU, STORE_ID
from tests.processes import Processes, free_port, wait_http, wait_listening

PIP = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]


@dataclass
class Target:
    name: str
    port: int
    process: subprocess.Popen[bytes]


class StandIn:
    """The control doors of bench/portone_standin.py."""

    def __init__(self, port: int) -> None:
        self.port = port

    def set_latency(self, ms: int) -> None:
        status, body = self._request("PUT", f"/_bench/latency?ms={ms}")
        assert status == 200, body

    def reads(self) -> int:
        """Payment reads the stand-in has answered since it started."""
        status, body = self._request("GET", "/_bench/reads")
        assert status == 200, body
        return int(json.loads(body)["reads"])

    def settled_reads(self, seconds: float = 5.0) -> int:
        """The count once the requests a run left in flight have read (or `seconds` on)."""
        deadline = time.monotonic() + seconds
        count = self.reads()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            count, previous = self.reads(), count
            if count == previous:
                break
        return count

    def _request(self, method: str, path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


def ensure_bench_packages() -> None:
    # Flask is not among the service's dependencies; the sample-shaped verifier needs it.
    if importlib.util.find_spec("flask") is None:
        print("installing flask into .venv (bench only) …", flush=True)
        subprocess.run([*PIP, "flask>=3"], check=True)


def ensure_wrk() -> None:
    """wrk from Debian's packages when this is a root shell with apt-get; else loadgen.py."""
    if shutil.which("wrk") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    print("installing wrk (apt-get) …", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        if subprocess.run(step, env=env, capture_output=True, check=False).returncode != 0:
            print("  could not install wrk: using bench/loadgen.py", flush=True)
            return


def migrate(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        env=env,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"alembic upgrade head failed:\n{done.stderr.decode()}")


def verifier_settings(
    database_url: str, standin_port: int, secret: str, workers: int = 1
) -> dict[str, str]:
    """The environment the service and the yardstick read: live mode against the stand-in."""
    return {
        "PORTONE_MODE": "live",
        "DATABASE_URL": database_url,
        "PORTONE_API_BASE_URL": f"http://127.0.0.1:{standin_port}",
        "PORTONE_API_SECRET": "bench-portone-secret",
        "PORTONE_STORE_ID": STORE_ID,
        "PORTONE_CHANNEL_KEY": "channel-key-bench",
        "PORTONE_WEBHOOK_SECRETS": secret,
        "INTERNAL_API_TOKEN": secrets.token_urlsafe(24),
        "RECONCILE_INTERVAL_SECONDS": "0",
        # As many connections as requests in flight, spread over the workers.
        "DATABASE_POOL_SIZE": str(-(-CONCURRENCY // workers)),
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),  # INFO: a line per request
    }


def start_servers(
    procs: Processes, database_url: str, secret: str, workers: int
) -> tuple[dict[str, Target], StandIn]:
    python = sys.executable
    standin_port = free_port()
    standin = [python, str(BENCH / "portone_standin.py"), f"--port={standin_port}"]
    # PortOne is another machine: it must not take the service's core.
    procs.start("standin", [*standin, f"--store-id={STORE_ID}"], cpu=LOAD_CPU)
    wait_listening(procs, "standin", standin_port)
    env = {
        **os.environ,
        **verifier_settings(database_url, standin_port, secret, workers),
        "PYTHONUNBUFFERED": "1",
    }
    for proxy in ("http_proxy", "https_proxy", "all_proxy"):
        env.pop(proxy, None)  # loopback only
        env.pop(proxy.upper(), None)
    argvs = {
        "service": [python, "-m", "app", "serve", "--workers", f"{workers}", "--port"],
        "minimal": [python, str(BENCH / "minimal_verifier.py"), "--port"],
        "sample": [python, str(BENCH / "flask_sample.py"), "--port"],
        "constant": [python, str(BENCH / "constant.py"), "--port"],
    }
    started = {}
    for name, argv in argvs.items():
        port = free_port()
        # Several workers get every core; the load generator then shares one with them.
        cpu = SERVER_CPU if name != "service" or workers == 1 else f"0-{workers - 1}"
        started[name] = Target(name, port, procs.start(name, [*argv, str(port)], cpu=cpu, env=env))
    for name, target in started.items():
        wait_listening(procs, name, target.port)
    service = f"http://127.0.0.1:{started['service'].port}/readyz"
    asyncio.run(wait_http(procs, "service", service, seconds=30))
    return started, StandIn(standin_port)
