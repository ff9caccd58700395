"""The base of every JSON body this service reads or writes: camelCase on the wire."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class StrictApiModel(ApiModel):
    """A request body: unknown fields are an error, not a silent typo."""

    model_config = ConfigDict(extra="forbid")
