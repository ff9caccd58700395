"""Create `.venv` and install the project into it, again whenever pyproject.toml changes.

The scripts need nothing but Python and pip: each calls `enter()` first, which
re-executes the script with the virtualenv's interpreter.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".installed"


def _wanted() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def enter() -> None:
    if Path(sys.prefix).resolve() != VENV.resolve():
        if not PYTHON.exists():
            print("creating .venv …", flush=True)
            venv.create(VENV, with_pip=True)
        if not STAMP.exists() or STAMP.read_text() != _wanted():
            print("installing dependencies into .venv …", flush=True)
            pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            subprocess.run([*pip, "--upgrade", "pip"], check=True)
            subprocess.run([*pip, "--editable", f"{ROOT}[dev]"], check=True)
            STAMP.write_text(_wanted())
        os.execv(PYTHON, [str(PYTHON), *sys.argv])
    os.chdir(ROOT)
