"""requirements.lock pins what the service imports, and the Dockerfile installs it alone.

Offline and fast. What the service imports is read from app/'s import statements;
which distribution provides a module, and what each distribution requires, from this
virtualenv's metadata (the dev install starts from the lock, so it holds those
packages). Whether the lock is exactly what `python3 scripts/lock.py` writes needs the
package index: the container check runs `scripts/lock.py --check`, beside the image's
install, which needs it too.

Each check is a function of the file's text, and each is also shown failing on a broken
copy, so none can pass by checking nothing.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
DOCKERFILE = ROOT / "Dockerfile"
LOCK_COMMAND = "python3 scripts/lock.py"

_PIN = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!_-]+)")
_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")
_COMMENT = re.compile(r"(^|\s+)#.*$")


# requirements.lock


def lock_entries(text: str) -> list[str]:
    """The requirement lines, as pip reads them: continuations joined, comments dropped."""
    entries: list[str] = []
    pending: list[str] = []
    for line in text.splitlines():
        if line.endswith("\\") and not line.lstrip().startswith("#"):
            pending.append(line[:-1])
            continue
        joined = _COMMENT.sub("", " ".join([*pending, line])).strip()
        pending = []
        if joined:
            entries.append(joined)
    if pending:
        entries.append(" ".join(pending).strip())
    return entries


def pins(text: str) -> dict[str, str]:
    """Version by name (PEP 503) of each `name==version` entry."""
    found: dict[str, str] = {}
    for entry in lock_entries(text):
        if match := _PIN.fullmatch(entry.split()[0]):
            found[canonicalize_name(match["name"])] = match["version"]
    return found


def entry_problems(text: str) -> list[str]:
    """Every entry is `name==version` with its sha256 hashes, and nothing else."""
    problems = []
    for entry in lock_entries(text):
        first, *rest = entry.split()
        if not _PIN.fullmatch(first):
            problems.append(f"not a `name==version` pin: {entry[:100]}")
        elif not rest or not all(_HASH.fullmatch(word) for word in rest):
            problems.append(f"{first}: not followed by its --hash=sha256:… options alone")
    return problems


# What the service needs


def _third_party_imports() -> dict[str, str]:
    """Each top-level module app/ imports that is neither stdlib nor app: which file."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "app").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.partition(".")[0]
                if top != "app" and top not in sys.stdlib_module_names:
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def closure(requirements: Iterable[Requirement], why: str) -> dict[str, str]:
    """Each distribution these require, theirs in turn, and so on (with the extras asked
    for, markers evaluated for this Python), by name (PEP 503): why it is needed."""
    needed: dict[str, str] = {}
    extras_done: dict[str, set[str]] = {}
    stack = [(requirement, why) for requirement in requirements]
    while stack:
        requirement, reason = stack.pop()
        name = canonicalize_name(requirement.name)
        extras = set(requirement.extras)
        if name in extras_done and extras <= extras_done[name]:
            continue
        needed.setdefault(name, reason)
        extras_done[name] = extras_done.get(name, set()) | extras
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{name} ({reason}) is not installed here: cannot read what it requires")
        for text in requires:
            dependency = Requirement(text)
            marker = dependency.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in {"", *extras}):
                stack.append((dependency, f"{reason} → {name}"))
    return needed


@functools.cache
def needed_by_imports() -> dict[str, str]:
    providers = importlib.metadata.packages_distributions()
    requirements = []
    for module, where in _third_party_imports().items():
        if module not in providers:
            pytest.fail(f"{where} imports {module}, which no installed distribution provides")
        requirements += [
            (Requirement(dist), f"{where} imports {module}") for dist in providers[module]
        ]
    needed: dict[str, str] = {}
    for requirement, why in requirements:
        needed = closure([requirement], why) | needed
    return needed


@functools.cache
def needed_by_pyproject() -> dict[str, str]:
    return closure(project_dependencies(), "pyproject.toml")


def project_dependencies() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def unpinned(needed: dict[str, str], lock_text: str) -> list[str]:
    locked = pins(lock_text)
    return [f"{name} (needed: {why})" for name, why in sorted(needed.items()) if name not in locked]


def test_the_lock_pins_every_package_the_service_imports_and_all_they_require() -> None:
    needed = needed_by_imports()

    assert {"fastapi", "sqlalchemy", "httpx-aiohttp"} <= needed.keys()
    assert unpinned(needed, LOCK.read_text()) == []


def test_the_lock_pins_every_project_dependency_and_all_it_requires() -> None:
    needed = needed_by_pyproject()
    locked = pins(LOCK.read_text())

    assert unpinned(needed, LOCK.read_text()) == []
    outside = [
        f"{requirement} but the lock pins {locked[canonicalize_name(requirement.name)]}"
        for requirement in project_dependencies()
        if canonicalize_name(requirement.name) in locked
        and not requirement.specifier.contains(
            locked[canonicalize_name(requirement.name)], prereleases=True
        )
    ]
    assert outside == []


def test_every_lock_entry_is_an_exact_pin_with_hashes_and_it_says_how_it_is_made() -> None:
    text = LOCK.read_text()

    assert entry_problems(text) == []
    header = text.split("\n\n")[0].splitlines()[:5]
    assert any("autogenerated" in line for line in header), header
    assert any(line.strip("# ") == LOCK_COMMAND for line in header), header


def _without(text: str, name: str) -> str:
    """The lock with `name`'s entry (its pin, hashes and notes) taken out."""
    kept, skipping = [], False
    for line in text.splitlines(keepends=True):
        if _PIN.match(line):
            skipping = canonicalize_name(line.split("==")[0]) == name
        if not skipping:
            kept.append(line)
    return "".join(kept)


@pytest.mark.parametrize(
    ("name", "from_imports", "from_pyproject"),
    [
        ("httpx-aiohttp", True, True),  # imported by app/, and a dependency
        ("aiohappyeyeballs", True, True),  # what aiohttp, which httpx-aiohttp requires, needs
        ("fastapi-swagger", False, True),  # named only as a string (its static files)
        ("websockets", False, True),  # uvicorn[standard]'s extra
    ],
)
def test_a_lock_missing_a_package_is_caught(
    name: str, from_imports: bool, from_pyproject: bool
) -> None:
    broken = _without(LOCK.read_text(), name)
    assert name not in pins(broken)
    assert entry_problems(broken) == []

    caught_by_imports = any(
        line.startswith(f"{name} ") for line in unpinned(needed_by_imports(), broken)
    )
    caught_by_pyproject = any(
        line.startswith(f"{name} ") for line in unpinned(needed_by_pyproject(), broken)
    )
    assert (caught_by_imports, caught_by_pyproject) == (from_imports, from_pyproject)


def test_a_lock_with_a_line_taken_out_or_an_unhashed_pin_is_caught() -> None:
    lines = LOCK.read_text().splitlines(keepends=True)
    first_pin = next(i for i, line in enumerate(lines) if _PIN.match(line))

    pin_line_gone = "".join(lines[:first_pin] + lines[first_pin + 1 :])
    assert entry_problems(pin_line_gone) != []
    unhashed = "".join(lines) + "six==1.17.0\n"
    assert entry_problems(unhashed) == [
        "six==1.17.0: not followed by its --hash=sha256:… options alone"
    ]
    from_an_index = "".join(lines) + "--extra-index-url somewhere\n"
    assert entry_problems(from_an_index) != []


# Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuations joined, comments dropped."""
    kept = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(kept))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), " ".join(arguments.split())))
    return instructions


def dockerfile_problems(text: str) -> list[str]:
    instructions = dockerfile_instructions(text)
    problems = []
    # Any RUN that installs, or names a Python installer, is the one install from the lock.
    installer = re.compile(r"\binstall\b|\b(pip3?|uv|poetry|pipenv|easy_install|conda)\b")
    lock_install = re.compile(
        r"\S*pip install --require-hashes --no-deps -r /tmp/requirements\.lock"
    )
    installs = [
        args for keyword, args in instructions if keyword == "RUN" and installer.search(args)
    ]
    if len(installs) != 1 or not lock_install.fullmatch(installs[0]):
        problems.append(f"installs other than the lock, hash-checked, alone: {installs}")
    wildcard = re.compile(r"forwarded[_-]allow[_-]ips\W*\*", re.IGNORECASE)
    if any(wildcard.search(args) for _, args in instructions):
        problems.append("trusts X-Forwarded-* from anyone (FORWARDED_ALLOW_IPS=*)")
    last_stage = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM") :]
    users = [args for keyword, args in last_stage if keyword == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append(f"the image runs as root (USER: {users})")
    return problems


def test_the_dockerfile_installs_the_lock_alone_trusts_no_wildcard_and_runs_as_a_user() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("--require-hashes --no-deps -r", "-r"), "installs other than"),
        (("RUN /venv/bin/pip install", "# RUN /venv/bin/pip install"), "installs other than"),
        (
            ("-r /tmp/requirements.lock", "-r /tmp/requirements.lock fastapi-swagger"),
            "installs other than",
        ),
        (
            ("COPY requirements.lock", "RUN pip install uvicorn\nCOPY requirements.lock"),
            "installs other than",
        ),
        (
            (
                "PYTHONDONTWRITEBYTECODE=1",
                "PYTHONDONTWRITEBYTECODE=1 \\\n    FORWARDED_ALLOW_IPS=*",
            ),
            "FORWARDED",
        ),
        (("USER verifier", "USER root"), "as root"),
        (("USER verifier", ""), "as root"),
    ],
)
def test_a_dockerfile_that_strays_is_caught(change: tuple[str, str], problem: str) -> None:
    text = DOCKERFILE.read_text()
    assert change[0] in text
    broken = text.replace(change[0], change[1], 1)
    assert any(problem in found for found in dockerfile_problems(broken))
