"""Strings this service stores: what it accepts from callers, and what it keeps of PortOne's."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, Field

MAX_DEPTH = 32
"""How deep JSON this service reads may nest (PortOne's nests three deep): deeper is
refused rather than parsed, whose recursion runs out of stack at a few thousand levels."""


def storable(value: str) -> str:
    """`value`, if Postgres text can hold it (no NUL, no lone UTF-16 surrogate)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if not is_utf8(value):
        raise ValueError("must be valid Unicode (no lone surrogates)")
    return value


def is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_storable(value: str) -> bool:
    return "\x00" not in value and is_utf8(value)


def storable_json(value: Any, depth: int = 1) -> Any:
    """The same for every key and string of a JSON value; no NaN or infinity, and no
    nesting deeper than MAX_DEPTH."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    if isinstance(value, dict | list) and depth > MAX_DEPTH:
        raise ValueError(f"must not nest deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return {storable(key): storable_json(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [storable_json(item, depth + 1) for item in value]
    return value


def without_nul(value: str) -> str:
    """What this service keeps of a string it cannot refuse (PortOne's): NUL removed."""
    return value.replace("\x00", "")


NO_NUL = Field(
    json_schema_extra={"pattern": "^[^\\u0000]*$"},
    description="Text without NUL characters (and no lone UTF-16 surrogates).",
)
"""What the OpenAPI document says of every Text; `storable` is what enforces it."""

Text = Annotated[str, AfterValidator(storable), NO_NUL]
"""A string from a caller of this service: refused (422) unless Postgres can store it."""

PortOneText = Annotated[str, AfterValidator(without_nul)]
"""A string from PortOne: never refused, NUL removed so Postgres can store it."""
