"""A client generated from `/openapi.json` by a generator shops use (openapi-python-client)
compiles, and creates, completes and refunds an order in the sandbox."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from app.main import create_app
from tests.helpers import TOKEN, make_settings, order_row
from tests.live_server import serving

pytestmark = pytest.mark.slow

FLOW = Path(__file__).parent / "generated_client" / "flow.py"
BIN = Path(sys.executable).parent


def run(*command: str | Path, cwd: Path) -> str:
    # The generator formats what it writes with ruff, which it finds on PATH.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def generated(
    database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    """The sandbox's URL, and a folder with the client generated from its document and
    the shop's code beside it, type-checked against it."""
    settings = make_settings(database_url, portone_mode="sandbox", portone_api_base_url=None)
    with serving(create_app(settings)) as base_url:
        document = tmp_path / "openapi.json"
        document.write_text(httpx.get(f"{base_url}/openapi.json").text)
        output: list[str | Path] = ["--output-path", tmp_path / "client", "--meta", "none"]
        said = run(
            BIN / "openapi-python-client", "generate", "--path", document, *output, cwd=tmp_path
        )
        assert "Warning" not in said, said  # nothing of the document left out
        shutil.copy(FLOW, tmp_path / "flow.py")
        mypy = [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent"]
        run(*mypy, "flow.py", cwd=tmp_path)
        yield base_url, tmp_path


async def test_a_generated_client_compiles_and_pays_and_refunds_an_order(
    generated: tuple[str, Path], db: asyncpg.Connection
) -> None:
    base_url, folder = generated

    outcome = json.loads(run(sys.executable, "flow.py", base_url, TOKEN, cwd=folder))

    assert outcome["created"] == "PENDING"
    assert outcome["paid"] == 200
    assert outcome["completed"] == "PAID"
    assert outcome["refunded"] == ["PARTIALLY_REFUNDED", 3_000]
    assert outcome["stored"] == ["PARTIALLY_REFUNDED", [3_000]]
    row = await order_row(db, outcome["orderId"])
    assert (row["status"], row["refunded_amount"]) == ("PARTIALLY_REFUNDED", 3_000)
