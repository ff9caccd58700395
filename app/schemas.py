"""The base of every JSON body this service reads or writes: camelCase on the wire."""

from __future__ import annotations

from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic.alias_generators import to_camel
from starlette.responses import Response


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    def answer(self) -> Response:
        """This body as a 200 answer, serialized once. A route returning it names the model as
        its `response_model` for the document; FastAPI would otherwise validate again what
        the code has just built, then serialize it."""
        return Response(self.model_dump_json(by_alias=True), media_type="application/json")


class StrictApiModel(ApiModel):
    """A request body: unknown fields are an error, not a silent typo."""

    model_config = ConfigDict(extra="forbid")


def _integral(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


INTEGRAL = BeforeValidator(_integral)
"""After a `StrictInt` and its bounds: an integer as JSON Schema's `integer` has it (so as
a generated client may send it), `739` or `739.0`; never `739.5`, `"739"` or `true`."""
