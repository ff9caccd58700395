"""An order row as the API shows it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from app.config import Settings
from app.orders.schemas import Checkout, OrderOut, VirtualAccount


class OrderView(Protocol):
    """An order as either store holds it: the ORM's `Order` or the payment path's `OrderRow`."""

    @property
    def id(self) -> str: ...
    @property
    def payment_id(self) -> str: ...
    @property
    def order_name(self) -> str: ...
    @property
    def amount(self) -> int: ...
    @property
    def currency(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def rejection_reason(self) -> str | None: ...
    @property
    def portone_status(self) -> str | None: ...
    @property
    def paid_at(self) -> datetime | None: ...
    @property
    def refunded_amount(self) -> int: ...
    @property
    def va_bank(self) -> str | None: ...
    @property
    def va_account_number(self) -> str | None: ...
    @property
    def va_remittee_name(self) -> str | None: ...
    @property
    def va_expires_at(self) -> datetime | None: ...
    @property
    def customer(self) -> dict[str, Any] | None: ...
    @property
    def metadata_(self) -> dict[str, Any]: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...


def present_order(order: OrderView, settings: Settings) -> OrderOut:
    virtual_account = None
    if order.va_account_number is not None:
        virtual_account = VirtualAccount(
            bank=order.va_bank,
            account_number=order.va_account_number,
            remittee_name=order.va_remittee_name,
            expires_at=order.va_expires_at,
        )
    return OrderOut(
        order_id=order.id,
        payment_id=order.payment_id,
        order_name=order.order_name,
        amount=order.amount,
        currency=order.currency,
        status=order.status,
        paid_at=order.paid_at,
        refunded_amount=order.refunded_amount,
        virtual_account=virtual_account,
        rejection_reason=order.rejection_reason,
        customer=order.customer,
        metadata=order.metadata_,
        checkout=Checkout(
            store_id=settings.store_id,
            channel_key=settings.portone_channel_key,
            payment_id=order.payment_id,
            order_name=order.order_name,
            total_amount=order.amount,
            # The browser SDK names currencies its own way: CURRENCY_KRW.
            currency=f"CURRENCY_{order.currency}",
        ),
        created_at=order.created_at,
        updated_at=order.updated_at,
    )
