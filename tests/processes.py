"""Processes a harness starts (servers, stand-ins, load generators): logged, and stopped.

`Processes` starts each under a name, with its output in `<logs>/<name>.log`, in a
session of its own (a terminal's Ctrl-C reaches the harness only, which then stops the
rest in order) and bound to die with the harness, even one killed with SIGKILL.
`stop_all` stops them in reverse order: SIGTERM, then SIGKILL for one that lingers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

HOST = "127.0.0.1"
PR_SET_PDEATHSIG = 1
_STOPPING = (signal.SIGINT, signal.SIGTERM)


class ProcessFailed(RuntimeError):
    """A started process exited, or did not answer in time."""


def die_with_parent() -> None:
    """A `preexec_fn`: the child gets SIGTERM when its parent dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class Processes:
    """Everything a run started, stopped in reverse order whatever happens."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        cpu: str | None = None,
        capture: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` as `name`, pinned to `cpu` (taskset's list) when given; its
        stderr, and its stdout unless `capture` keeps that for the caller, go to its log."""
        if cpu is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", cpu, *argv]  # taskset execs: the pid is the program's
        with self.log(name).open("ab") as log:
            process = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if capture else log,
                stderr=log,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        self.running.append((name, process))
        return process

    def finished(self, process: subprocess.Popen[bytes]) -> None:
        """Forget a process that has ended on its own (a load generator, a profiler)."""
        self.running = [(n, p) for n, p in self.running if p is not process]

    def check_alive(self) -> None:
        for name, process in self.running:
            if process.poll() is not None:
                raise ProcessFailed(
                    f"{name} exited with {process.returncode} ({self.log(name)}):\n"
                    + self.log_tail(name)
                )

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.log(name)
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop_all(self, grace: float = 10.0) -> None:
        """SIGTERM to each, the last started first; SIGKILL to any still running after
        `grace` seconds. All are told at once: a server draining a request that waits
        on another (a stand-in's hang) must not hold up the rest."""
        stopping = list(reversed(self.running))
        with _signals_ignored():  # a second Ctrl-C must not cut the stopping short
            for _, process in stopping:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            for name, process in stopping:
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    print(f"  {name} outlived SIGTERM by {grace:.0f} s; killing it", flush=True)
                    process.kill()
                    process.wait()
        self.running.clear()


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in _STOPPING}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def wait_listening(processes: Processes, name: str, port: int, seconds: float = 30.0) -> None:
    """Until something accepts connections on `port`; fails as soon as a process dies."""
    deadline = time.monotonic() + seconds
    while True:
        processes.check_alive()
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2):
            return
        if time.monotonic() > deadline:
            raise ProcessFailed(f"{name} did not listen on {port} within {seconds:.0f} s")
        time.sleep(0.1)


async def wait_http(processes: Processes, name: str, url: str, seconds: float = 60.0) -> None:
    """Until `url` answers 200; fails as soon as a process dies."""
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=2, trust_env=False) as client:  # loopback: no proxy
        while True:
            processes.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise ProcessFailed(f"{name}: {url} did not answer 200 within {seconds:.0f} s")
            await asyncio.sleep(0.2)
