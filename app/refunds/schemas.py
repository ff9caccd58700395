"""Refund request bodies."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictInt

from app.schemas import INTEGRAL, StrictApiModel
from app.text import Text

RefundAmount = Annotated[StrictInt, Field(ge=1, le=10**12), INTEGRAL]
"""Part of the order's amount to refund; without it, everything that is left."""


class RefundAccountIn(StrictApiModel):
    """Where a virtual-account payment's money goes back to."""

    bank: Annotated[Text, Field(min_length=1, max_length=40)]
    number: Annotated[Text, Field(min_length=1, max_length=64)]
    holder_name: Annotated[Text, Field(min_length=1, max_length=200)]
    holder_phone_number: Annotated[Text, Field(max_length=40)] | None = None


class RefundRequest(StrictApiModel):
    amount: RefundAmount | None = None
    reason: Annotated[Text, Field(min_length=1, max_length=200)]
    refund_account: RefundAccountIn | None = None
