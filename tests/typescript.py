"""TypeScript's verdict on generated sources, compiled against the npm project in
`tests/browser_sdk/` (PortOne's browser SDK and the compiler, pinned by its lockfile).

`install()` runs `npm ci` once per lockfile; `type_check()` writes every source into one
folder beside that project's `node_modules` and runs `tsc` once over all of them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent / "browser_sdk"
STAMP = PROJECT / "node_modules" / ".installed-lockfile.sha256"
NPM_TIMEOUT = 600
TSC_TIMEOUT = 300
OUTSIDE = ""  # diagnostics of no generated source: the configuration, the SDK's own files

# `path(line,col): error TS1234: message`; its continuation lines are indented.
DIAGNOSTIC = re.compile(r"^(?P<path>[^\s(][^(]*)\((?P<line>\d+),(?P<column>\d+)\): (?P<rest>.*)$")
_QUIET_NPM = {"NPM_CONFIG_UPDATE_NOTIFIER": "false"}


@dataclass(frozen=True)
class Source:
    """One file to type-check. A source cut out of a document keeps its place there:
    its line `prelude + 1` is line `first_line` of `origin`."""

    name: str
    text: str
    origin: str | None = None
    first_line: int = 1
    prelude: int = 0

    def place(self, line: int, column: int) -> str:
        if self.origin is None:
            return f"{self.name}:{line}:{column}"
        return f"{self.origin}:{self.first_line + line - self.prelude - 1}:{column} ({self.name})"

    def numbered(self) -> str:
        return "\n".join(f"{n:4} {line}" for n, line in enumerate(self.text.splitlines(), 1))


@dataclass(frozen=True)
class Verdict:
    """What one `tsc` run said, its diagnostics by source name (`OUTSIDE`: by none)."""

    command: str
    exit_code: int
    output: str
    diagnostics: dict[str, list[str]]

    @property
    def sound(self) -> bool:
        """tsc ran to its end and every failure it reported was read here."""
        return self.exit_code == 0 if not self.diagnostics else self.exit_code in (1, 2)

    def errors(self, name: str) -> list[str]:
        """What stops `name` from compiling: its own diagnostics, those of the whole
        program, and a run that cannot be trusted."""
        errors = self.diagnostics.get(name, []) + self.diagnostics.get(OUTSIDE, [])
        if not self.sound:
            errors.append(f"`{self.command}` exited {self.exit_code}")
        return errors

    def report(self) -> str:
        return f"$ {self.command}  (exit {self.exit_code})\n{self.output}"


def require_node() -> None:
    """Node.js, npm and npx, or the test cannot run: skipped on a machine without them
    (a new user's with Python alone), failed under CI, which must run it (.ci/run
    installs them)."""
    missing = [tool for tool in ("node", "npm", "npx") if shutil.which(tool) is None]
    if missing:
        message = (
            f"{', '.join(missing)} not found: the browser contract is type-checked against "
            "@portone/browser-sdk with Node.js (Debian: apt-get install nodejs npm)"
        )
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def _run(command: list[str], timeout: int) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command,
            cwd=PROJECT,
            env=os.environ | _QUIET_NPM,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(command)}` took more than {timeout} s", pytrace=False)


@contextmanager
def _exclusive() -> Iterator[None]:
    with (PROJECT / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _lockfile_digest() -> str:
    files = (PROJECT / "package.json", PROJECT / "package-lock.json")
    return hashlib.sha256(b"".join(path.read_bytes() for path in files)).hexdigest()


def install() -> None:
    """`npm ci` into the project's `node_modules`, unless the same lockfile is installed."""
    require_node()
    digest = _lockfile_digest()
    with _exclusive():
        if STAMP.is_file() and STAMP.read_text() == digest:
            return
        command = ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"]
        done = _run(command, NPM_TIMEOUT)
        if done.returncode != 0:
            pytest.fail(f"`{' '.join(command)}` in {PROJECT} failed:\n{done.stdout}{done.stderr}")
        STAMP.write_text(digest)


def type_check(sources: Sequence[Source]) -> Verdict:
    """One `tsc` run over all `sources`, with the project's compiler options."""
    names = [source.name for source in sources]
    assert len(set(names)) == len(names), f"two sources share a name: {sorted(names)}"
    folder = Path(tempfile.mkdtemp(prefix="generated-", dir=PROJECT))
    try:
        for source in sources:
            (folder / source.name).write_text(source.text, encoding="utf-8")
        config = folder / "tsconfig.json"
        config.write_text(json.dumps({"extends": "../tsconfig.json", "files": names}))
        command = ["npx", "--no", "--", "tsc", "-p", str(config.relative_to(PROJECT))]
        done = _run([*command, "--pretty", "false"], TSC_TIMEOUT)
    finally:
        shutil.rmtree(folder)
    # tsc writes its diagnostics to stdout; stderr is for a crash (or npm's own words).
    by_name = {f"{folder.name}/{source.name}": source for source in sources}
    found = _diagnostics(done.stdout, by_name)
    return Verdict(" ".join(command), done.returncode, done.stdout + done.stderr, found)


def _diagnostics(output: str, sources: dict[str, Source]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for first, *more in _entries(output.splitlines()):
        match = DIAGNOSTIC.match(first)
        source = sources.get(match["path"]) if match else None
        if match is None or source is None:
            found.setdefault(OUTSIDE, []).append("\n".join([first, *more]))
            continue
        place = source.place(int(match["line"]), int(match["column"]))
        found.setdefault(source.name, []).append("\n".join([f"{place}: {match['rest']}", *more]))
    return found


def _entries(lines: Iterable[str]) -> Iterator[list[str]]:
    """tsc's output cut into diagnostics: a line, then the indented lines that go on it."""
    entry: list[str] = []
    for line in lines:
        if line.startswith((" ", "\t")) and entry:
            entry.append(line)
            continue
        if entry:
            yield entry
        entry = [line] if line.strip() else []
    if entry:
        yield entry
