"""An order row as the API shows it."""

from __future__ import annotations

from app.config import Settings
from app.orders.models import Order
from app.orders.schemas import Checkout, OrderOut, VirtualAccount


def present_order(order: Order, settings: Settings) -> OrderOut:
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
