"""The Dockerfile's steps, outside Docker: install from the lock, migrate, serve, stop.

    python3 scripts/container_check.py

Builds the image's layout in a temporary folder (a fresh virtualenv from
requirements.lock; alembic.ini, migrations/ and app/ side by side), migrates a fresh
database on the test Postgres, serves, checks /healthz and /readyz, and stops with
SIGTERM. Exits non-zero if any step fails.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import venv
from pathlib import Path

import _venv

_venv.enter()

sys.path.insert(0, str(_venv.ROOT))
from tests.database import admin, postgres_server, with_database  # noqa: E402
from tests.processes import free_port  # noqa: E402


def step(title: str) -> None:
    print(f"==> {title}", flush=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="container-") as folder, postgres_server() as server:
        srv = Path(folder) / "srv"
        srv.mkdir()
        step("install: a fresh virtualenv from requirements.lock")
        venv.create(Path(folder) / "venv", with_pip=True)
        python = str(Path(folder) / "venv" / "bin" / "python")
        lock = str(_venv.ROOT / "requirements.lock")
        subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "-r", lock], check=True)
        for name in ("alembic.ini", "migrations", "app"):
            source = _venv.ROOT / name
            copy = shutil.copytree if source.is_dir() else shutil.copy
            copy(source, srv / name)
        asyncio.run(admin(server, 'DROP DATABASE IF EXISTS "verifier_container"'))
        asyncio.run(admin(server, 'CREATE DATABASE "verifier_container"'))
        env = {
            "PATH": os.environ["PATH"],
            "PORTONE_MODE": "live",
            "DATABASE_URL": with_database(server, "verifier_container"),
            "PORTONE_API_SECRET": "container-check",
            "PORTONE_STORE_ID": "store-container-check",
            "PORTONE_WEBHOOK_SECRETS": "whsec_Y29udGFpbmVyLWNoZWNr",
            "INTERNAL_API_TOKEN": "container-check",
        }
        step("migrate: alembic upgrade head")
        alembic = [python, "-m", "alembic", "upgrade", "head"]
        subprocess.run(alembic, cwd=srv, env=env, check=True)
        port = free_port()
        step(f"serve: python -m app serve on port {port}")
        serve = [python, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)]
        process = subprocess.Popen(serve, cwd=srv, env=env)
        try:
            for path in ("/healthz", "/readyz"):
                status = _wait_for(f"http://127.0.0.1:{port}{path}")
                print(f"    {path} -> {status}", flush=True)
                if status != 200:
                    return 1
            step("stop: SIGTERM")
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
            print(f"    exited with {code}", flush=True)
            return 0 if code in (0, -signal.SIGTERM) else 1
        finally:
            if process.poll() is None:
                process.kill()
            asyncio.run(admin(server, 'DROP DATABASE IF EXISTS "verifier_container" WITH (FORCE)'))


def _wait_for(url: str) -> int:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                return int(response.status)
        except OSError:
            if time.monotonic() > deadline:
                return 0
            time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
