"""Fuzz a running service with the checks of `test_openapi_fuzz.py`.

    python tests/fuzz/run_against_server.py URL --token T --seed N --max-examples M

Loads the server's `/openapi.json` and runs every pass (positive, negative, known ids,
unauthenticated) over every operation; the `known` pass first creates a few orders. The
server's PortOne (sandbox mode's emulator, or a stand-in) is called for real, so point it
at one that cannot take money. Exits 1 when any operation failed, 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
import traceback
from pathlib import Path

import requests
import schemathesis
from schemathesis.core.failures import FailureGroup

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz import api_fuzz
from tests.fuzz.api_fuzz import Known


class _Session(requests.Session):
    """A session that takes paths relative to the server's base URL."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")

    def post_path(self, path: str, **kwargs: object) -> requests.Response:
        return self.post(self.base_url + path, timeout=30, **kwargs)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_url", help="e.g. http://127.0.0.1:8000")
    parser.add_argument("--token", required=True, help="INTERNAL_API_TOKEN of the server")
    parser.add_argument("--seed", type=int, default=None, help="default: derandomized")
    parser.add_argument("--max-examples", type=int, default=50)
    parser.add_argument(
        "--exclude", action="append", default=[], help="skip paths with this prefix (repeatable)"
    )
    parser.add_argument(
        "--pass", dest="passes", action="append", choices=api_fuzz.PASSES, help="repeatable"
    )
    args = parser.parse_args(argv)
    base_url: str = args.base_url.rstrip("/")

    schema = api_fuzz.prepared(
        schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=api_fuzz.CONFIG)
    )
    session = _Session(base_url)
    orders = api_fuzz.seed_orders(session.post_path, args.token)
    known = Known(
        order_ids=[order["orderId"] for order in orders],
        payment_ids=[order["paymentId"] for order in orders],
    )
    failed: list[str] = []
    for label, pass_name in api_fuzz.plan(schema):
        if args.passes and pass_name not in args.passes:
            continue
        if any(label.split(" ", 1)[1].startswith(prefix) for prefix in args.exclude):
            continue
        started = time.monotonic()
        try:
            sent = api_fuzz.fuzz(
                api_fuzz.find(schema, label),
                pass_name,
                session=session,
                token=args.token,
                known=known,
                max_examples=args.max_examples,
                seed=args.seed,
                base_url=base_url,
            )
        except (Exception, BaseExceptionGroup) as exc:  # report it, then go on
            failed.append(f"{pass_name}: {label}")
            print(f"FAIL {pass_name:16} {label}", flush=True)
            if isinstance(exc, FailureGroup | AssertionError):
                print(textwrap.indent(str(exc), "    "), flush=True)
            else:
                traceback.print_exc()
            continue
        elapsed = time.monotonic() - started
        print(f"ok   {pass_name:16} {label}  ({sent} requests, {elapsed:.1f}s)", flush=True)
    print(f"\n{len(failed)} failed" + "".join(f"\n  {name}" for name in failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
