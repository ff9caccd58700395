"""Refreshes `portone-v2.schemas.json` from PortOne's full V2 OpenAPI document.

    python tests/portone/reference/extract.py path/to/portone-v2.openapi.json

The tests check the emulator's and the mocks' payloads against PortOne's own schemas. The
full document is 1.5 MB; this keeps the schemas those checks reach (payments, their
listing, cancellations, manual confirmation, and the errors of each) and every schema
they refer to.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TARGET = HERE / "portone-v2.schemas.json"
ROOTS = (
    "Payment",
    "GetPaymentsResponse",
    "GetPaymentError",
    "CancelPaymentResponse",
    "CancelPaymentError",
    "ConfirmPaymentBody",
    "ConfirmedPaymentSummary",
    "ConfirmPaymentError",
)


def referenced(node: Any) -> set[str]:
    if isinstance(node, list):
        return set().union(*(referenced(item) for item in node))
    if not isinstance(node, dict):
        return set()
    found = set().union(*(referenced(value) for value in node.values()))
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        found.add(ref.rsplit("/", 1)[1])
    return found


def main(source: Path) -> None:
    document = json.loads(source.read_text(encoding="utf-8"))
    schemas: dict[str, Any] = document["components"]["schemas"]
    kept: set[str] = set()
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name not in kept:
            kept.add(name)
            todo.extend(referenced(schemas[name]) - kept)
    subset = {
        "info": {**document["info"], "x-extracted-from": "PortOne's V2 OpenAPI document"},
        "components": {"schemas": {name: schemas[name] for name in sorted(kept)}},
    }
    TARGET.write_text(json.dumps(subset, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{len(kept)} of {len(schemas)} schemas -> {TARGET}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
