"""Hypothesis strategies for PortOne's Payment bodies, from PortOne's own OpenAPI.

`$ref`s are inlined; a discriminated `oneOf` becomes an `anyOf` of its variants with the
discriminator pinned (PortOne declares `status` and `type` as plain strings in each
variant); `int32`/`int64` bound their integers. Objects are assembled here and every
leaf (strings, formats, numbers, enums, arrays of leaves) comes from
hypothesis-jsonschema, which is too slow to build PortOne's large objects itself.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from tests.portone.reference import SCHEMAS

Json = dict[str, Any]

# PortOne's API reference (its schemas, kept in the repository); PORTONE_OPENAPI may name
# a newer full document.
REFERENCE = Path(os.environ.get("PORTONE_OPENAPI", SCHEMAS))

# PortOne's status -> the schema of a payment in that status.
VARIANTS = {
    "PAID": "PaidPayment",
    "VIRTUAL_ACCOUNT_ISSUED": "VirtualAccountIssuedPayment",
    "FAILED": "FailedPayment",
    "CANCELLED": "CancelledPayment",
    "PARTIAL_CANCELLED": "PartialCancelledPayment",
    "READY": "ReadyPayment",
    "PAY_PENDING": "PayPendingPayment",
}

INTEGER_BOUNDS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
DROPPED = frozenset({"title", "description", "discriminator", "example", "examples"})


@functools.cache
def _components() -> dict[str, Json]:
    document = json.loads(REFERENCE.read_text(encoding="utf-8"))
    schemas: dict[str, Json] = document["components"]["schemas"]
    return schemas


def resolve(node: Any, stack: tuple[str, ...] = ()) -> Any:
    """`node` with every `$ref` inlined and discriminated unions made explicit."""
    if isinstance(node, list):
        return [resolve(item, stack) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        if name in stack:
            raise ValueError(f"recursive schema {' -> '.join((*stack, name))}")
        return resolve(_components()[name], (*stack, name))
    out: Json = {}
    for key, value in node.items():
        if key in DROPPED or key.startswith("x-"):
            continue
        if key == "properties":
            out[key] = {name: resolve(schema, stack) for name, schema in value.items()}
        else:
            out[key] = resolve(value, stack)
    if out.get("type") == "integer" and out.get("format") in INTEGER_BOUNDS:
        low, high = INTEGER_BOUNDS[out.pop("format")]
        out.setdefault("minimum", low)
        out.setdefault("maximum", high)
    discriminator = node.get("discriminator")
    if discriminator and "oneOf" in out:
        name = discriminator["propertyName"]
        variants = []
        for value, ref in discriminator["mapping"].items():
            variant = resolve({"$ref": ref}, stack)
            variant["properties"][name] = {"const": value}
            variants.append(variant)
        del out["oneOf"]
        out["anyOf"] = variants
    return out


def payment_schema(status: str) -> Json:
    schema: Json = resolve({"$ref": f"#/components/schemas/{VARIANTS[status]}"})
    schema["properties"]["status"] = {"const": status}
    return schema


def strategy_for(schema: Json) -> st.SearchStrategy[Any]:
    """A strategy for `schema`: objects built here, leaves by hypothesis-jsonschema."""
    branches: list[Json] | None = schema.get("anyOf", schema.get("oneOf"))
    if branches is not None:
        return st.one_of([strategy_for(branch) for branch in branches])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        required = set(schema.get("required", ()))
        properties = {name: strategy_for(sub) for name, sub in schema["properties"].items()}
        return st.fixed_dictionaries(
            {name: s for name, s in properties.items() if name in required},
            optional={name: s for name, s in properties.items() if name not in required},
        )
    if kind == "array":
        items = strategy_for(schema.get("items", {}))
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=3)
    return from_schema(schema)


@functools.cache
def payment_strategy(status: str) -> st.SearchStrategy[Json]:
    """Bodies PortOne's spec allows for a payment in `status`."""
    return strategy_for(payment_schema(status))
