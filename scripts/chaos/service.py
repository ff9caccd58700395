"""`python -m app`, as the stress run starts it: a reconciler pass takes a few payments.

    python -m scripts.chaos.service --per-pass N serve|reconcile …

The run's backlogs of a few dozen payments then outlast a pass, as production's
thousands outlast ORDERS_PER_PASS, so the run sees whether each list rotates.
"""

from __future__ import annotations

import argparse
import sys


def command(per_pass: int) -> list[str]:
    """The argv that starts `python -m app` this way; the subcommand and its options follow."""
    return [sys.executable, "-m", "scripts.chaos.service", f"--per-pass={per_pass}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.chaos.service")
    parser.add_argument("--per-pass", type=int, required=True)
    args, rest = parser.parse_known_args(argv)
    # Imported here: the stress run itself only needs `command`.
    from app import reconcile
    from app.__main__ import main as app_main

    reconcile.ORDERS_PER_PASS = args.per_pass
    return app_main(rest)


if __name__ == "__main__":
    sys.exit(main())
