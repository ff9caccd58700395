"""The Dockerfile's steps, outside Docker: install from the lock, migrate, serve, stop.

    python3 scripts/container_check.py

First checks that requirements.lock is what `python3 scripts/lock.py` writes from
pyproject.toml (`--check`; it asks the package index). Then builds the image's layout in
a temporary folder: a fresh virtualenv with the lock installed by the Dockerfile's own
`pip install` arguments (read from the Dockerfile: hash-checked, no dependencies of its
own), then `pip check`; alembic.ini, migrations/ and app/ side by side, and every module
of `app` imported there, so a package the lock lacks fails here by name. Then migrates a
fresh database on the test Postgres (tests/database.py: TEST_DATABASE_URL, else
127.0.0.1:5432, else an embedded one), serves in live mode with secrets of the strength
live mode requires, checks /healthz and /readyz, and stops with SIGTERM. Nothing it
starts talks to anything but this machine. Exits non-zero if any step fails; prints how
long each took.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import venv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import _venv

_venv.enter()

sys.path.insert(0, str(_venv.ROOT))
from tests.database import admin, postgres_server, with_database  # noqa: E402
from tests.processes import free_port  # noqa: E402

DOCKERFILE = _venv.ROOT / "Dockerfile"
LOCK = _venv.ROOT / "requirements.lock"
# The image's /srv: what the Dockerfile copies beside the virtualenv.
LAYOUT = ("alembic.ini", "migrations", "app")

# Imports every module of the package `app` from the current directory, as `python -m app`
# finds it in /srv; a module that fails to import fails the walk (walk_packages alone
# would skip a package whose import fails).
IMPORT_ALL = """
import importlib, pkgutil, sys
import app

def fail(name):
    raise SystemExit(f"cannot import {name}: {sys.exc_info()[1]!r}")

names = ["app", *(m.name for m in pkgutil.walk_packages(app.__path__, "app.", onerror=fail))]
for name in names:
    importlib.import_module(name)
print(f"    imported {len(names)} modules from {app.__path__[0]}")
"""


def step(title: str) -> None:
    print(f"==> {title}", flush=True)


@contextmanager
def timed(name: str, durations: dict[str, float]) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        durations[name] = time.monotonic() - start


def dockerfile_install(lock: Path) -> list[str]:
    """The arguments of the Dockerfile's one `pip install`, with its lock's path made `lock`.
    It must install from requirements.lock alone."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    runs = [line for line in text.splitlines() if re.match(r"RUN\s.*\bpip\s+install\b", line)]
    if len(runs) != 1:
        raise SystemExit(f"Dockerfile: expected one `RUN … pip install`, found {len(runs)}")
    words = shlex.split(runs[0])
    arguments = words[words.index("install") + 1 :]
    given = [word for word in arguments if not word.startswith("-")]
    if len(given) != 1 or Path(given[0]).name != LOCK.name:
        raise SystemExit(f"Dockerfile: its pip installs {given}, not requirements.lock alone")
    return [str(lock) if word == given[0] else word for word in arguments]


def live_environment(python: str, database_url: str) -> dict[str, str]:
    """Live mode, configured as an operator would, with nothing this machine set leaking in
    (no PYTHONPATH that would find this checkout's packages); the virtualenv first on PATH,
    as the image's ENV has it."""
    return {
        "PATH": f"{Path(python).parent}{os.pathsep}{os.environ['PATH']}",
        "PORTONE_MODE": "live",
        "DATABASE_URL": database_url,
        "PORTONE_API_SECRET": secrets.token_urlsafe(32),
        "PORTONE_STORE_ID": "store-container-check",
        "PORTONE_WEBHOOK_SECRETS": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "INTERNAL_API_TOKEN": secrets.token_urlsafe(32),
        # Nothing leaves this machine: PortOne is a closed port here, the reconciler off.
        "PORTONE_API_BASE_URL": f"http://127.0.0.1:{free_port()}",
        "RECONCILE_INTERVAL_SECONDS": "0",
    }


def main() -> int:
    durations: dict[str, float] = {}
    try:
        step("lock: requirements.lock is what `python3 scripts/lock.py` writes")
        with timed("lock", durations):
            lock_check = [sys.executable, str(_venv.ROOT / "scripts" / "lock.py"), "--check"]
            stale = subprocess.run(lock_check, check=False).returncode != 0
        # The image is checked all the same: both failures are worth knowing at once.
        code = _image(durations)
        if stale:
            print("FAILED: requirements.lock is not what scripts/lock.py writes", flush=True)
        return code or int(stale)
    finally:
        print("    took " + ", ".join(f"{k} {v:.1f} s" for k, v in durations.items()), flush=True)


def _image(durations: dict[str, float]) -> int:
    with tempfile.TemporaryDirectory(prefix="container-") as folder:
        srv = Path(folder) / "srv"
        srv.mkdir()
        python = str(Path(folder) / "venv" / "bin" / "python")
        install = dockerfile_install(LOCK)
        step(f"install: a fresh virtualenv, pip install {shlex.join(install)}")
        with timed("install", durations):
            venv.create(Path(folder) / "venv", with_pip=True)
            subprocess.run([python, "-m", "pip", "install", "-q", *install], check=True)
        step("pip check: every installed package has what it requires")
        subprocess.run([python, "-m", "pip", "check"], check=True)
        for name in LAYOUT:
            source = _venv.ROOT / name
            if source.is_dir():  # bytecode caches are in .dockerignore
                shutil.copytree(source, srv / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(source, srv / name)
        step("import: every module of app, in that virtualenv")
        bare = {"PATH": os.environ["PATH"]}
        with timed("import", durations):
            subprocess.run([python, "-c", IMPORT_ALL], cwd=srv, env=bare, check=True)
        with postgres_server() as server:
            return _serve(python, srv, server, durations)


def _serve(python: str, srv: Path, server: str, durations: dict[str, float]) -> int:
    database = f"verifier_container_{secrets.token_hex(4)}"
    asyncio.run(admin(server, f'CREATE DATABASE "{database}"'))
    try:
        env = live_environment(python, with_database(server, database))
        step("migrate: alembic upgrade head")
        with timed("migrate", durations):
            alembic = [str(Path(python).parent / "alembic"), "upgrade", "head"]
            subprocess.run(alembic, cwd=srv, env=env, check=True)
        port = free_port()
        step(f"serve: python -m app serve on port {port}")
        start = time.monotonic()
        serve = [python, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)]
        process = subprocess.Popen(serve, cwd=srv, env=env)
        try:
            for path in ("/healthz", "/readyz"):
                status = _wait_for(f"http://127.0.0.1:{port}{path}", process)
                print(f"    {path} -> {status}", flush=True)
                if status != 200:
                    return 1
            durations["ready"] = time.monotonic() - start
            step("stop: SIGTERM")
            with timed("stop", durations):
                process.send_signal(signal.SIGTERM)
                code = process.wait(timeout=30)
            print(f"    exited with {code}", flush=True)
            return 0 if code in (0, -signal.SIGTERM) else 1
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    finally:
        asyncio.run(admin(server, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def _wait_for(url: str, process: subprocess.Popen[bytes]) -> int:
    """200 once it answers so; else, after 30 s or the server's exit, the last status (0:
    no answer at all)."""
    deadline = time.monotonic() + 30
    status = 0
    while process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as exc:  # not ready yet, or never
            status = exc.code
        except OSError:
            pass
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return status


if __name__ == "__main__":
    sys.exit(main())
