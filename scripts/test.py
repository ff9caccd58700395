"""The test command: lint, types, then the whole test suite. Extra arguments go to pytest.

python3 scripts/test.py            # everything
python3 scripts/test.py -k webhook # some tests, after lint and types
"""

from __future__ import annotations

import subprocess
import sys

import _venv

_venv.enter()

STEPS = [
    ["ruff", "check", "."],
    ["ruff", "format", "--check", "."],
    ["mypy"],
    ["pytest", *sys.argv[1:]],
]

for step in STEPS:
    print("==>", " ".join(step), flush=True)
    if subprocess.run([sys.executable, "-m", *step], check=False).returncode != 0:
        sys.exit(f"FAILED: {' '.join(step)}")
