"""The base of every JSON body this service reads or writes (camelCase on the wire), and
the strings it accepts."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from starlette.responses import Response


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


def json_response(body: ApiModel) -> Response:
    """`body` as FastAPI would write it, without validating again a model just built.

    Where a route returns a model, FastAPI dumps it, validates the dump against the
    response model and serializes that: three passes where one will do.
    """
    return Response(body.model_dump_json(by_alias=True), media_type="application/json")


class StrictApiModel(ApiModel):
    """A request body: unknown fields are an error, not a silent typo."""

    model_config = ConfigDict(extra="forbid")


def storable(value: str) -> str:
    """Postgres text holds neither NUL characters nor lone UTF-16 surrogates."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def storable_json(value: Any) -> Any:
    """The same for every key and string of a JSON value; and no NaN or infinity."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    if isinstance(value, dict):
        return {storable(key): storable_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable_json(item) for item in value]
    return value


Text = Annotated[str, AfterValidator(storable)]
"""Any string this service will store or look up."""
