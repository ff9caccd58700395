"""PortOne V2 payloads, read tolerantly.

PortOne adds fields, statuses and payment methods without notice, so these models keep
only what the service uses, ignore the rest, and hold enum-like values as plain strings.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from app.text import PortOneText as Text
from app.times import Instant


class PaymentStatus(StrEnum):
    READY = "READY"
    PAY_PENDING = "PAY_PENDING"
    VIRTUAL_ACCOUNT_ISSUED = "VIRTUAL_ACCOUNT_ISSUED"
    PAID = "PAID"
    FAILED = "FAILED"
    PARTIAL_CANCELLED = "PARTIAL_CANCELLED"
    CANCELLED = "CANCELLED"


class PortOneModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class PaymentAmount(PortOneModel):
    total: Annotated[int, Field(ge=0)]
    paid: Annotated[int, Field(ge=0)] = 0
    cancelled: Annotated[int, Field(ge=0)] = 0


class SelectedChannel(PortOneModel):
    type: Text | None = None


class PaymentMethod(PortOneModel):
    """Any method; the virtual-account fields are filled only for `PaymentMethodVirtualAccount`."""

    type: Text | None = None
    bank: Text | None = None
    account_number: Text | None = None
    remittee_name: Text | None = None
    expired_at: Instant | None = None

    @property
    def is_virtual_account(self) -> bool:
        return self.type == "PaymentMethodVirtualAccount"


class PaymentFailure(PortOneModel):
    reason: Text | None = None
    pg_code: Text | None = None
    pg_message: Text | None = None


class CancellationStatus(StrEnum):
    REQUESTED = "REQUESTED"  # accepted; the card company or bank settles it later
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class PaymentCancellation(PortOneModel):
    status: Text
    id: Text | None = None
    total_amount: int = 0
    reason: Text | None = None
    requested_at: Instant | None = None
    cancelled_at: Instant | None = None


class Dispute(PortOneModel):
    """A chargeback or dispute at the card company, as PortOne mirrors it."""

    status: Text  # UNRESOLVED, RESOLVED
    reason: Text | None = None
    created_at: Instant | None = None
    resolved_at: Instant | None = None


class Payment(PortOneModel):
    status: Text
    id: Text
    transaction_id: Text | None = None
    store_id: Text | None = None
    channel: SelectedChannel | None = None
    method: PaymentMethod | None = None
    amount: PaymentAmount
    currency: Text
    status_changed_at: Instant | None = None
    updated_at: Instant | None = None
    paid_at: Instant | None = None
    failure: PaymentFailure | None = None
    cancellations: list[PaymentCancellation] = []
    disputes: list[Dispute] = []

    def cancellation(self, cancellation_id: str) -> PaymentCancellation | None:
        return next((c for c in self.cancellations if c.id == cancellation_id), None)

    @property
    def cancellable_amount(self) -> int:
        return self.amount.total - self.amount.cancelled


class PortOneErrorBody(PortOneModel):
    type: Text = "UNKNOWN"
    message: Text = ""


class CancelPaymentResponse(PortOneModel):
    cancellation: PaymentCancellation


class PageInfo(PortOneModel):
    number: int
    size: int
    total_count: int


class PaymentPage(PortOneModel):
    """One page of `GET /payments`; items PortOne's newer shapes make unreadable are dropped."""

    items: list[Payment]
    page: PageInfo
    unreadable: int = 0


class RawPaymentPage(PortOneModel):
    items: list[dict[str, Any]]
    page: PageInfo

    def read(self) -> PaymentPage:
        payments = []
        for item in self.items:
            try:
                payments.append(Payment.model_validate(item))
            except ValidationError:
                continue
        return PaymentPage(
            items=payments, page=self.page, unreadable=len(self.items) - len(payments)
        )


class RefundAccount(PortOneModel):
    bank: Text
    number: Text
    holder_name: Text
    holder_phone_number: Text | None = None
