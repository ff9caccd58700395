"""Order bodies as the HTTP API reads and writes them."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictInt, WithJsonSchema, field_validator
from pydantic.json_schema import SkipJsonSchema

from app.config import Settings
from app.orders.order import Order
from app.portone.currencies import CURRENCIES
from app.schemas import INTEGRAL, ApiModel, StrictApiModel
from app.text import MAX_DEPTH, Text, storable_json
from app.times import Instant, UtcDatetime, utc_now

MAX_METADATA_BYTES = 16_384
LONGEST_HOLD = timedelta(days=7)

RETURN_URL = (
    r"^(https://[A-Za-z0-9.-]+|http://(localhost|127\.0\.0\.1|\[::1\]))(:[0-9]{1,5})?"
    r"([/?#][^\u0000-\u0020\u007f]*)?$"
)
"""An absolute https URL, or http on this machine (a shop developing locally), without
credentials, spaces or control characters; one pattern for the validator and the OpenAPI
document alike (written so that ECMA-262 and Python read it the same way: no classes
such as whitespace, which each defines its own way)."""
_RETURN_URL = re.compile(RETURN_URL)

Text200 = Annotated[Text, Field(max_length=200)]


def _return_url(value: str) -> str:
    if not _RETURN_URL.fullmatch(value):
        raise ValueError(
            "must be an absolute https URL (http only on localhost), without credentials"
        )
    return value


def _portone_currency(value: str) -> str:
    if value not in CURRENCIES:
        raise ValueError("must be a currency PortOne takes: an ISO 4217 code, e.g. KRW")
    return value


CURRENCY_SCHEMA = WithJsonSchema({"type": "string", "enum": sorted(CURRENCIES)})
Currency = Annotated[str, AfterValidator(_portone_currency), CURRENCY_SCHEMA]

ReturnUrl = Annotated[
    Text,
    Field(
        min_length=1,
        max_length=2000,
        description="Where the redirect flow lands the customer: an absolute https URL,"
        " or http on localhost; no credentials.",
        json_schema_extra={"pattern": RETURN_URL},
    ),
    AfterValidator(_return_url),
]


def _expiry(value: datetime) -> datetime:
    now = utc_now()
    if value <= now:
        raise ValueError("must be in the future")
    if value > now + LONGEST_HOLD:
        raise ValueError(f"must be at most {LONGEST_HOLD.days} days ahead")
    return value


ExpiresAt = Annotated[
    UtcDatetime,
    AfterValidator(_expiry),
    Field(
        description="When the order stops taking payment (a held seat, a limited stock):"
        f" RFC 3339 with an offset, in the future and at most {LONGEST_HOLD.days} days ahead."
        " A payment that arrives later is refused, or given back if PortOne took it.",
    ),
]


class Customer(StrictApiModel):
    id: Text200 | None = None
    name: Text200 | None = None
    email: Annotated[Text, Field(max_length=320)] | None = None
    phone_number: Annotated[Text, Field(max_length=40)] | None = None


class OrderCreate(StrictApiModel):
    order_name: Annotated[Text, Field(min_length=1, max_length=200)]
    amount: Annotated[StrictInt, Field(ge=1, le=10**12), INTEGRAL]
    currency: Currency = "KRW"
    customer: Customer | None = None
    metadata: Annotated[
        dict[str, Any],
        Field(
            description=f"Any JSON object of the shop's: at most {MAX_METADATA_BYTES} bytes"
            f" encoded, {MAX_DEPTH} levels deep, and no NUL character in a key or a string.",
        ),
    ] = {}
    return_url: ReturnUrl | None = None
    expires_at: ExpiresAt | None = None

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        metadata = storable_json(metadata)
        if len(json.dumps(metadata, ensure_ascii=False).encode()) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata must encode to at most {MAX_METADATA_BYTES} bytes")
        return metadata


class VirtualAccount(ApiModel):
    bank: str | None
    account_number: str
    remittee_name: str | None
    expires_at: datetime | None


class RefundOut(ApiModel):
    """A refund asked through this service; REQUESTED until PortOne settles it."""

    refund_id: str
    amount: int
    reason: str
    status: Literal["REQUESTED", "SUCCEEDED", "FAILED"]
    requested_at: Instant
    settled_at: Instant | None


class DisputeOut(ApiModel):
    """A chargeback or dispute at the card company, as PortOne reports it."""

    status: str  # UNRESOLVED, RESOLVED (PortOne may add more)
    reason: str | None
    created_at: Instant | None
    resolved_at: Instant | None


def _absent(value: object) -> bool:
    return value is None


LeftOutIfNone = Annotated[str | SkipJsonSchema[None], Field(default=None, exclude_if=_absent)]
"""A parameter the browser SDK types as `string | undefined`: left out, never null."""


class Checkout(ApiModel):
    """Exactly the parameters the browser passes to `PortOne.requestPayment`, typed as
    `@portone/browser-sdk/v2` types its `PaymentRequest` (but `payMethod`, the page's)."""

    store_id: str
    channel_key: LeftOutIfNone
    payment_id: str
    order_name: str
    total_amount: int
    currency: Annotated[str, CURRENCY_SCHEMA]
    redirect_url: LeftOutIfNone


class PaymentResult(ApiModel):
    """What the public doors answer: the payment's outcome and nothing about the customer.

    Anyone who knows a paymentId can ask, and paymentIds travel in URLs (the return
    query, browser history, Referer headers, analytics); a rejection's reason is in the
    problem body instead."""

    order_id: str
    payment_id: str
    order_name: str
    amount: int
    currency: str
    status: str
    paid_at: datetime | None
    refunded_amount: int
    virtual_account: VirtualAccount | None

    @staticmethod
    def of(order: Order) -> PaymentResult:
        return PaymentResult.model_construct(**_outcome(order))


def _outcome(order: Order) -> dict[str, Any]:
    """A payment result's fields, from a row this service wrote (so not validated again)."""
    virtual_account = None
    if order.va_account_number is not None:
        virtual_account = VirtualAccount.model_construct(
            bank=order.va_bank,
            account_number=order.va_account_number,
            remittee_name=order.va_remittee_name,
            expires_at=order.va_expires_at,
        )
    return {
        "order_id": order.id,
        "payment_id": order.payment_id,
        "order_name": order.order_name,
        "amount": order.amount,
        "currency": order.currency,
        "status": order.status,
        "paid_at": order.paid_at,
        "refunded_amount": order.refunded_amount,
        "virtual_account": virtual_account,
    }


class OrderOut(PaymentResult):
    """The whole order, for the shop's own services: the payment result, and what the shop
    told and asked of the service."""

    rejection_reason: str | None
    customer: dict[str, Any] | None
    metadata: dict[str, Any]
    return_url: str | None
    expires_at: datetime | None
    refunds: list[RefundOut]
    disputes: list[DisputeOut]
    checkout: Checkout
    created_at: datetime
    updated_at: datetime

    @classmethod
    def present(cls, order: Order, settings: Settings) -> OrderOut:
        """The order as the API shows it, built without validating again (`model_construct`)
        values that come from a row this service wrote: on every answer, that costs CPU and
        catches nothing."""
        return cls.model_construct(
            **_outcome(order),
            rejection_reason=order.rejection_reason,
            customer=order.customer,
            metadata=order.metadata,
            return_url=order.return_url,
            expires_at=order.expires_at,
            refunds=[RefundOut.model_validate(refund) for refund in order.refunds],
            disputes=[DisputeOut.model_validate(dispute) for dispute in order.disputes],
            checkout=Checkout.model_construct(
                store_id=settings.store_id,
                channel_key=settings.portone_channel_key,
                payment_id=order.payment_id,
                order_name=order.order_name,
                total_amount=order.amount,
                currency=order.currency,
                redirect_url=settings.redirect_url,
            ),
            created_at=order.created_at,
            updated_at=order.updated_at,
        )


class HistoryEntryOut(ApiModel):
    """One entry of an order's history: one look at its payment, and what it did."""

    at: datetime
    source: str
    portone_status: str | None
    from_status: str | None
    to_status: str
    detail: str | None


class OrderHistory(ApiModel):
    history: list[HistoryEntryOut]


class OrderPage(ApiModel):
    orders: list[OrderOut]
    next_cursor: str | None
