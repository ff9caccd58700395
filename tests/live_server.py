"""The service on 127.0.0.1 for clients that need real HTTP: the app in a thread of the
test process (`serving`), or `python -m app serve` in a process of its own
(`service_process`), which starts with fresh metrics and reads its configuration from
the environment as a deployment does."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from tests.processes import free_port

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def serving(app: FastAPI, port: int | None = None) -> Iterator[str]:
    """The base URL while `app` (lifespan included) serves in a background thread (on
    `port`, when the app was told its address)."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@contextmanager
def service_process(
    env: dict[str, str], *options: str, log: Path | None = None, cwd: Path = ROOT
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The base URL and the process of `python -m app serve` once it answers /healthz.
    Its output goes to `log`, or to pipes the caller reads with `communicate()`. On the
    way out it is asked to stop (SIGTERM), and killed if it lingers."""
    port = free_port()
    with contextlib.ExitStack() as files:
        output = files.enter_context(log.open("w")) if log else subprocess.PIPE
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(port), *options],
            env=env,
            cwd=cwd,
            stdout=output,
            stderr=output,
            text=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            if process.poll() is not None:
                raise AssertionError(log.read_text() if log else process.communicate())
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.1)
        yield base, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
