"""PortOne V2 payloads, read tolerantly.

PortOne adds fields, statuses and payment methods without notice, so these models keep
only what the service uses, ignore the rest, and hold enum-like values as plain strings.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel


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
    total: int
    paid: int = 0
    cancelled: int = 0


class SelectedChannel(PortOneModel):
    type: str | None = None


class PaymentMethod(PortOneModel):
    """Any method; the virtual-account fields are filled only for `PaymentMethodVirtualAccount`."""

    type: str | None = None
    bank: str | None = None
    account_number: str | None = None
    remittee_name: str | None = None
    expired_at: datetime | None = None

    @property
    def is_virtual_account(self) -> bool:
        return self.type == "PaymentMethodVirtualAccount"


class PaymentFailure(PortOneModel):
    reason: str | None = None
    pg_code: str | None = None
    pg_message: str | None = None


class PaymentCancellation(PortOneModel):
    status: str
    id: str | None = None
    total_amount: int = 0
    reason: str | None = None


class Payment(PortOneModel):
    status: str
    id: str
    transaction_id: str | None = None
    store_id: str | None = None
    channel: SelectedChannel | None = None
    method: PaymentMethod | None = None
    amount: PaymentAmount
    currency: str
    status_changed_at: datetime | None = None
    paid_at: datetime | None = None
    failure: PaymentFailure | None = None
    cancellations: list[PaymentCancellation] = []

    @property
    def cancellable_amount(self) -> int:
        return self.amount.total - self.amount.cancelled


class PortOneErrorBody(PortOneModel):
    type: str = "UNKNOWN"
    message: str = ""


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
    bank: str
    number: str
    holder_name: str
    holder_phone_number: str | None = None
