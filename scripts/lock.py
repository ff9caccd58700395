"""Write requirements.lock from pyproject.toml: the service's packages, pinned and hashed.

    python3 scripts/lock.py                          # after changing pyproject.toml's dependencies
    python3 scripts/lock.py --upgrade-package NAME   # move NAME to its newest allowed release
    python3 scripts/lock.py --check                  # exit 1, with a diff, if the lock is stale

Runs `uv pip compile` (uv comes with the dev extra, at one version) on pyproject.toml's
`[project] dependencies` for the Docker image's Python, CPython 3.11 on Linux: every
package the service needs and all of theirs, each pinned with `==` and the hashes of its
files, so `pip install --require-hashes --no-deps -r requirements.lock` (the Dockerfile's
install) installs exactly what was resolved, or fails. uv keeps the pins already in the
lock while pyproject.toml still allows them, so a regeneration changes only what it
must; other arguments (`--upgrade-package NAME`, `--upgrade`) are passed on to uv.

`--check` regenerates into a temporary file, from the lock's pins, and compares: it fails
on a hand edit, and on a pyproject.toml changed without relocking. Both need the package
index (the hashes are the index's, always).
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import _venv

_venv.enter()

LOCK = _venv.ROOT / "requirements.lock"
PIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*==\S+")
COMMAND = "python3 scripts/lock.py"
UV_COMPILE = [
    *(sys.executable, "-m", "uv", "pip", "compile", "pyproject.toml"),
    "--generate-hashes",
    # The image's interpreter (python:3.11 slim), whatever this machine runs.
    *("--python-version", "3.11", "--python-platform", "linux"),
    # The lock's header names this script, not uv's arguments.
    *("--custom-compile-command", COMMAND),
    # No uv.toml or [tool.uv] of this machine's changes the result.
    "--no-config",
    "--quiet",
]


def regenerate(extra: list[str]) -> str:
    """What uv writes, from pyproject.toml and the lock's pins as they are.

    uv prefers the pins its output file already holds, and keeps their hashes as they
    are: its output starts as the lock's pins alone, so the hashes are always the
    index's, and a hash changed or deleted by hand shows.
    """
    pins = [line.split()[0] for line in LOCK.read_text().splitlines() if PIN.match(line)]
    with tempfile.TemporaryDirectory(prefix="lock-") as folder:
        output = Path(folder) / LOCK.name
        output.write_text("".join(f"{pin}\n" for pin in pins))
        command = [*UV_COMPILE, "--output-file", str(output), *extra]
        subprocess.run(command, cwd=_venv.ROOT, check=True)
        return output.read_text()


def check() -> int:
    ours, theirs = LOCK.read_text(), regenerate([])
    if ours == theirs:
        print(f"{LOCK.name} is what `{COMMAND}` writes", flush=True)
        return 0
    diff = difflib.unified_diff(
        ours.splitlines(keepends=True),
        theirs.splitlines(keepends=True),
        f"{LOCK.name} (committed)",
        f"{LOCK.name} (regenerated)",
    )
    sys.stdout.writelines(diff)
    print(
        f"\n{LOCK.name} is not what `{COMMAND}` writes from pyproject.toml:"
        f" run `{COMMAND}` and commit the result",
        file=sys.stderr,
    )
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Other arguments go to `uv pip compile`.",
    )
    parser.add_argument("--check", action="store_true", help="regenerate, compare, write nothing")
    args, extra = parser.parse_known_args()
    if args.check and extra:
        parser.error(f"--check takes no other arguments: {' '.join(extra)}")
    try:
        if args.check:
            return check()
        LOCK.write_text(regenerate(extra))
    except subprocess.CalledProcessError as exc:  # uv has said why
        return exc.returncode or 1
    print(f"wrote {LOCK.name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
