"""The README's first command, on a fresh copy of the repository, as a new user runs it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import WEBHOOK_SECRET
from tests.processes import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fresh_copy() -> Iterator[Path]:
    """HEAD's files in a new folder, sharing this checkout's virtualenv (installing a
    new one is what `scripts/_venv.py` does on a truly new machine; it takes minutes)."""
    with tempfile.TemporaryDirectory(prefix="fresh-") as folder:
        copy = Path(folder)
        git = ["git", "-C", str(ROOT), "archive", "HEAD"]
        archive = subprocess.run(git, check=True, capture_output=True)
        untar = ["tar", "-x", "-C", str(copy)]
        subprocess.run(untar, input=archive.stdout, check=True)
        (copy / ".venv").symlink_to(ROOT / ".venv")
        yield copy


def _postmaster_pid(copy: Path) -> int:
    return int((copy / ".data" / "postgres" / "postmaster.pid").read_text().split()[0])


def _alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for a parent that daemonising left behind."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def _new_user(**environment: str) -> dict[str, str]:
    """A new user's environment: a PATH and a HOME, nothing else of this test run's."""
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **environment}


def _run_to_its_end(
    copy: Path, *arguments: str, **environment: str
) -> subprocess.CompletedProcess[str]:
    """`python3 scripts/run.py ARGUMENTS` as a new user types it, for a run that ends."""
    return subprocess.run(
        [sys.executable, "scripts/run.py", *arguments],
        cwd=copy,
        env=_new_user(**environment),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _run(copy: Path, port: int, **environment: str) -> subprocess.Popen[str]:
    """`python3 scripts/run.py --port PORT` as a new user types it, once /readyz says 200."""
    process = subprocess.Popen(
        [sys.executable, "scripts/run.py", "--port", str(port)],
        cwd=copy,
        env=_new_user(**environment),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    ready = None
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(httpx.TransportError):
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            if ready.status_code == 200:
                return process
        time.sleep(0.5)
    process.kill()
    raise AssertionError(f"not ready ({ready}): {process.communicate()[0]}")


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


def test_run_command_serves_the_sandbox_on_embedded_postgres_and_stops_it(
    fresh_copy: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = _run(fresh_copy, port)
    try:
        page = httpx.get(f"{base}/")
        assert page.status_code == 200
        assert "SANDBOX" in page.text
        postmaster = _postmaster_pid(fresh_copy)
        assert _alive(postmaster)
    finally:
        output = _stop(process)

    assert "internal token" in output
    assert f"{base}/docs" in output
    assert not _alive(postmaster)


def test_run_command_restarts_at_once_on_its_port_with_the_same_token(fresh_copy: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    first = _run(fresh_copy, port)
    token_file = fresh_copy / ".data" / "internal-token"
    token = token_file.read_text().strip()
    # A connection the server closes lingers in TIME_WAIT on its port after the stop.
    assert httpx.get(f"{base}/orders", headers={"Authorization": f"Bearer {token}"}).is_success
    _stop(first)

    again = _run(fresh_copy, port)
    try:
        answer = httpx.get(f"{base}/orders", headers={"Authorization": f"Bearer {token}"})
    finally:
        output = _stop(again)

    assert answer.status_code == 200
    assert token_file.read_text().strip() == token
    assert token in output
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(token) >= 32


def test_run_command_on_a_busy_port_says_so_and_starts_nothing(fresh_copy: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = _run_to_its_end(fresh_copy, "--port", str(port))

    assert run.returncode == 2, run.stdout + run.stderr
    assert f"port {port} is in use" in run.stdout
    assert "internal token" not in run.stdout
    assert not (fresh_copy / ".data").exists()


def test_run_command_help_tells_the_port_it_would_use(fresh_copy: Path) -> None:
    run = _run_to_its_end(fresh_copy, "--help", PORT="8123")

    assert run.returncode == 0, run.stderr
    assert "default: 8123" in run.stdout


def test_run_command_in_live_mode_never_prints_the_token(
    fresh_copy: Path, database_url: str
) -> None:
    secret = "live-token-that-must-never-be-printed-0001"
    live = {
        "PORTONE_MODE": "live",
        "DATABASE_URL": database_url,
        "PORTONE_API_SECRET": "portone-api-secret",
        "PORTONE_STORE_ID": "store-live",
        "PORTONE_WEBHOOK_SECRETS": WEBHOOK_SECRET,
        "INTERNAL_API_TOKEN": secret,
        "RECONCILE_INTERVAL_SECONDS": "0",
    }

    output = _stop(_run(fresh_copy, free_port(), **live))

    assert "LIVE mode" in output
    assert secret not in output
    assert not (fresh_copy / ".data" / "internal-token").exists()
