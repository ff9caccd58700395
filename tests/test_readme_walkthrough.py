"""The README's walk-through, run as a reader runs it: each marked block pasted in turn
into one shell, against the sandbox, answering what the README shows."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.helpers import TOKEN
from tests.live_server import service_process

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"<!-- walkthrough -->\n```sh\n(.*?)```\n(?:```text\n(.*?)```)?", re.S)
DOCUMENTED = "http://127.0.0.1:8000"
SEPARATOR = "=== next block ==="
BASH = shutil.which("bash") or "/bin/bash"


@pytest.fixture
def sandbox(database_url: str, db: asyncpg.Connection, tmp_path: Path) -> Iterator[str]:
    """The run command's service, in a process of its own (its metrics count from its
    start, as a reader's do), on a fresh database."""
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),  # this checkout's code, whichever the virtualenv installed
        "PORTONE_MODE": "sandbox",
        "DATABASE_URL": database_url,
        "INTERNAL_API_TOKEN": TOKEN,
        "LOG_LEVEL": "WARNING",
    }
    with service_process(env, log=tmp_path / "service.log", cwd=tmp_path) as (url, _):
        yield url


def walkthrough() -> list[tuple[str, str | None]]:
    blocks = BLOCK.findall((ROOT / "README.md").read_text())
    return [(code, shown or None) for code, shown in blocks]


def test_the_readme_has_a_walkthrough() -> None:
    assert len(walkthrough()) >= 5


def read_in_turn(url: str, reader: Path) -> subprocess.CompletedProcess[str]:
    """Every marked block pasted in turn into one shell at the reader's checkout."""
    script = f"\necho {SEPARATOR}\n".join(
        code.replace(DOCUMENTED, url) for code, _ in walkthrough()
    )
    return subprocess.run(
        [BASH, "-e", "-c", script], cwd=reader, capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(shutil.which("curl") is None, reason="the walk-through uses curl")
def test_the_readme_walkthrough_answers_what_it_shows_on_every_run_and_leaves_nothing(
    sandbox: str, tmp_path: Path
) -> None:
    reader = tmp_path / "checkout"
    (reader / ".data").mkdir(parents=True)
    (reader / ".data" / "internal-token").write_text(TOKEN + "\n")  # as the run command does
    before = sorted(reader.rglob("*"))

    for _ in ("the first run", "the second, against the same service and database"):
        run = read_in_turn(sandbox, reader)

        assert run.returncode == 0, run.stdout + run.stderr + (tmp_path / "service.log").read_text()
        answers = run.stdout.split(SEPARATOR + "\n")
        assert len(answers) == len(walkthrough())
        for (code, shown), answer in zip(walkthrough(), answers, strict=True):
            if shown is not None:
                assert answer == shown, f"{code}\nanswered:\n{answer}\nthe README shows:\n{shown}"
        assert sorted(reader.rglob("*")) == before
