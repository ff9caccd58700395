"""The README's first command, on a fresh copy of the repository, as a new user runs it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.processes import free_port

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


def test_run_command_serves_the_sandbox_on_embedded_postgres_and_stops_it(
    fresh_copy: Path,
) -> None:
    port = free_port()
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    process = subprocess.Popen(
        [sys.executable, "scripts/run.py", "--port", str(port)],
        cwd=fresh_copy,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        ready = None
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                ready = httpx.get(f"{base}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            time.sleep(0.5)
        assert ready is not None
        assert ready.status_code == 200
        page = httpx.get(f"{base}/")
        assert page.status_code == 200
        assert "SANDBOX" in page.text
        postmaster = _postmaster_pid(fresh_copy)
        assert _alive(postmaster)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)

    assert "internal token" in output
    assert f"{base}/docs" in output
    assert process.returncode == 0, output
    assert not _alive(postmaster)


def test_run_command_on_a_busy_port_says_so_and_starts_nothing(fresh_copy: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
        run = subprocess.run(
            [sys.executable, "scripts/run.py", "--port", str(port)],
            cwd=fresh_copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert run.returncode == 2, run.stdout + run.stderr
    assert f"port {port} is in use" in run.stdout
    assert "internal token" not in run.stdout
    assert not (fresh_copy / ".data").exists()


def test_run_command_help_tells_the_port_it_would_use(fresh_copy: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "PORT": "8123"}
    run = subprocess.run(
        [sys.executable, "scripts/run.py", "--help"],
        cwd=fresh_copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    assert "default: 8123" in run.stdout
