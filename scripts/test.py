"""The test command: lint, types, then the whole test suite. Extra arguments go to pytest.

python3 scripts/test.py            # everything (the README's and CI's command)
python3 scripts/test.py --fast     # the inner loop: no processes, browsers, fuzzers or stress
python3 scripts/test.py -k webhook # some tests, after lint and types
"""

from __future__ import annotations

import subprocess
import sys

import _venv

_venv.enter()

arguments = sys.argv[1:]
if "--fast" in arguments:
    # One worker per core (pytest-xdist), each on a database of its own.
    arguments = [a for a in arguments if a != "--fast"] + ["-m", "not slow", "-n", "auto"]

STEPS = [
    ["ruff", "check", "."],
    ["ruff", "format", "--check", "."],
    ["mypy"],
    ["pytest", *arguments],
]

for step in STEPS:
    print("==>", " ".join(step), flush=True)
    if subprocess.run([sys.executable, "-m", *step], check=False).returncode != 0:
        sys.exit(f"FAILED: {' '.join(step)}")
