"""An in-memory PortOne V2: payments, their state changes, and PortOne's refusals.

Bodies carry every field `reference/portone-v2.openapi.json` (and the official SDK)
requires for each status. State lives in the process: the sandbox is one process.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from app.times import rfc3339, utc_now

Method = Literal["CARD", "VIRTUAL_ACCOUNT"]


class EmulatorError(Exception):
    """A refusal in PortOne's own shape: HTTP status, `type`, `message`."""

    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message


def _instant(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("not a date-time")
    return datetime.fromisoformat(value)


def _rfc3339(at: datetime | None) -> str | None:
    return rfc3339(at) if at else None


@dataclass
class Cancellation:
    id: str
    amount: int
    reason: str
    at: datetime

    def body(self) -> dict[str, Any]:
        return {
            "status": "SUCCEEDED",
            "id": self.id,
            "totalAmount": self.amount,
            "taxFreeAmount": 0,
            "vatAmount": self.amount // 11,
            "reason": self.reason,
            "requestedAt": _rfc3339(self.at),
            "cancelledAt": _rfc3339(self.at),
        }


@dataclass
class EmulatedPayment:
    id: str
    store_id: str
    order_name: str
    total: int
    currency: str
    method: Method
    channel_type: str
    status: str = "READY"
    requested_at: datetime = field(default_factory=utc_now)
    status_changed_at: datetime = field(default_factory=utc_now)
    transaction_id: str = field(default_factory=lambda: "tx_" + secrets.token_hex(10))
    paid_at: datetime | None = None
    failed_at: datetime | None = None
    failure_reason: str | None = None
    cancellations: list[Cancellation] = field(default_factory=list)
    account_number: str = field(default_factory=lambda: "5621" + str(secrets.randbelow(10**10)))

    @property
    def cancelled(self) -> int:
        return sum(c.amount for c in self.cancellations)

    def move(self, status: str) -> None:
        self.status = status
        # Strictly increasing, so snapshots order even within one clock tick.
        self.status_changed_at = max(utc_now(), self.status_changed_at + timedelta(microseconds=1))

    def body(self) -> dict[str, Any]:
        changed = _rfc3339(self.status_changed_at)
        body: dict[str, Any] = {
            "status": self.status,
            "id": self.id,
            "transactionId": self.transaction_id,
            "merchantId": "merchant-sandbox",
            "storeId": self.store_id,
            "channel": {
                "type": self.channel_type,
                "id": "channel-sandbox",
                "key": "channel-key-sandbox",
                "name": "Sandbox channel",
                "pgProvider": "TOSSPAYMENTS",
                "pgMerchantId": "sandbox-pg-merchant",
            },
            "version": "V2",
            "requestedAt": _rfc3339(self.requested_at),
            "updatedAt": changed,
            "statusChangedAt": changed,
            "orderName": self.order_name,
            "amount": {
                "total": self.total,
                "taxFree": 0,
                "vat": self.total // 11,
                "supply": self.total - self.total // 11,
                "discount": 0,
                "paid": self.total if self.paid_at else 0,
                "cancelled": self.cancelled,
                "cancelledTaxFree": 0,
            },
            "currency": self.currency,
            "customer": {},
            "origin": {"platformType": "PC", "ipAddress": "127.0.0.1"},
            "isCulturalExpense": False,
            "products": [],
            "webhooks": [],
            "method": self._method(),
        }
        if self.paid_at:
            body["paidAt"] = _rfc3339(self.paid_at)
            body["disputes"] = []
            body["receiptUrl"] = f"https://sandbox.invalid/receipts/{self.id}"
        if self.status == "FAILED":
            body["failedAt"] = _rfc3339(self.failed_at)
            body["failure"] = {"reason": self.failure_reason, "pgCode": "SANDBOX"}
        if self.cancellations:
            body["cancellations"] = [c.body() for c in self.cancellations]
            body["cancelledAt"] = _rfc3339(self.cancellations[-1].at)
        return body

    def _method(self) -> dict[str, Any]:
        if self.method == "CARD":
            return {"type": "PaymentMethodCard", "card": {"number": "53275019****1234"}}
        return {
            "type": "PaymentMethodVirtualAccount",
            "bank": "SHINHAN",
            "accountNumber": self.account_number,
            "accountType": "NORMAL",
            "remitteeName": "Sandbox Shop",
            "expiredAt": _rfc3339(self.requested_at + timedelta(days=3)),
            "issuedAt": _rfc3339(self.requested_at),
        }


@dataclass
class PaymentRequest:
    payment_id: str
    order_name: str
    amount: int
    currency: str
    method: Method
    channel_type: str


class Emulator:
    """PortOne's state machine; every change returns the webhook type it causes."""

    def __init__(self, store_id: str) -> None:
        self.store_id = store_id
        self.payments: dict[str, EmulatedPayment] = {}
        self.pre_registered: dict[str, tuple[int, str]] = {}

    def get(self, payment_id: str) -> EmulatedPayment:
        payment = self.payments.get(payment_id)
        if payment is None:
            raise EmulatorError(404, "PAYMENT_NOT_FOUND", "결제 건이 존재하지 않습니다.")
        return payment

    def pre_register(self, payment_id: str, amount: int, currency: str) -> None:
        existing = self.payments.get(payment_id)
        if existing is not None and existing.paid_at is not None:
            raise EmulatorError(409, "ALREADY_PAID", "결제가 이미 완료되었습니다.")
        self.pre_registered[payment_id] = (amount, currency)

    def pay(self, request: PaymentRequest) -> tuple[EmulatedPayment, str]:
        current = self.payments.get(request.payment_id)
        if current is not None and current.status not in ("READY", "FAILED"):
            raise EmulatorError(409, "ALREADY_PAID", "결제가 이미 진행되었습니다.")
        payment = self._new(request)
        expected = self.pre_registered.get(payment.id)
        if expected is not None and expected != (request.amount, request.currency):
            # PortOne refuses an amount that differs from the pre-registered one.
            return self._fail(payment, "사전 등록된 결제 정보와 일치하지 않습니다.")
        if request.method == "VIRTUAL_ACCOUNT":
            payment.move("VIRTUAL_ACCOUNT_ISSUED")
            return payment, "Transaction.VirtualAccountIssued"
        return self._paid(payment)

    def deposit(self, payment_id: str) -> tuple[EmulatedPayment, str]:
        payment = self.get(payment_id)
        if payment.status != "VIRTUAL_ACCOUNT_ISSUED":
            raise EmulatorError(
                409, "PAYMENT_NOT_WAITING_FOR_DEPOSIT", "입금 대기 상태가 아닙니다."
            )
        return self._paid(payment)

    def fail(self, request: PaymentRequest, reason: str) -> tuple[EmulatedPayment, str]:
        """The attempt fails; a payment never started is created for the order first."""
        payment = self.payments.get(request.payment_id)
        if payment is None:
            payment = self._new(request)
        elif payment.status not in ("READY", "VIRTUAL_ACCOUNT_ISSUED", "PAY_PENDING"):
            raise EmulatorError(409, "PAYMENT_NOT_FAILABLE", f"payment is {payment.status}")
        return self._fail(payment, reason)

    def cancel(
        self,
        payment_id: str,
        *,
        amount: int | None,
        reason: str,
        current_cancellable_amount: int | None = None,
    ) -> tuple[EmulatedPayment, Cancellation, str]:
        payment = self.get(payment_id)
        if payment.status == "CANCELLED":
            raise EmulatorError(409, "PAYMENT_ALREADY_CANCELLED", "결제가 이미 취소되었습니다.")
        if payment.status not in ("PAID", "PARTIAL_CANCELLED"):
            raise EmulatorError(409, "PAYMENT_NOT_PAID", "결제가 완료되지 않았습니다.")
        cancellable = payment.total - payment.cancelled
        if current_cancellable_amount is not None and current_cancellable_amount != cancellable:
            raise EmulatorError(
                409, "CANCELLABLE_AMOUNT_CONSISTENCY_BROKEN", "취소 가능 잔액 검증에 실패했습니다."
            )
        amount = cancellable if amount is None else amount
        if amount <= 0 or amount > cancellable:
            raise EmulatorError(
                409,
                "CANCEL_AMOUNT_EXCEEDS_CANCELLABLE_AMOUNT",
                "결제 취소 금액이 취소 가능 금액을 초과했습니다.",
            )
        cancellation = Cancellation("cancel_" + secrets.token_hex(8), amount, reason, utc_now())
        payment.cancellations.append(cancellation)
        if payment.cancelled == payment.total:
            payment.move("CANCELLED")
            return payment, cancellation, "Transaction.Cancelled"
        payment.move("PARTIAL_CANCELLED")
        return payment, cancellation, "Transaction.PartialCancelled"

    def close_virtual_account(self, payment_id: str) -> tuple[EmulatedPayment, str]:
        payment = self.get(payment_id)
        if payment.status != "VIRTUAL_ACCOUNT_ISSUED":
            raise EmulatorError(
                409, "PAYMENT_NOT_WAITING_FOR_DEPOSIT", "입금 대기 상태가 아닙니다."
            )
        payment.cancellations.append(
            Cancellation("close_" + secrets.token_hex(8), 0, "closed", utc_now())
        )
        payment.move("CANCELLED")
        return payment, "Transaction.Cancelled"

    def list_page(self, request_body: str | None) -> dict[str, Any]:
        """PortOne's `GET /payments` answer for its `requestBody` query parameter."""
        try:
            options = json.loads(request_body or "{}")
            page = options.get("page") or {}
            number, size = int(page.get("number", 0)), int(page.get("size", 10))
            filters = options.get("filter") or {}
            since, until = _instant(filters.get("from")), _instant(filters.get("until"))
        except (ValueError, TypeError, AttributeError):
            raise EmulatorError(400, "INVALID_REQUEST", "requestBody is not valid") from None
        matching = self.changed_between(since, until)
        return {
            "items": [payment.body() for payment in matching[number * size : (number + 1) * size]],
            "page": {"number": number, "size": size, "totalCount": len(matching)},
        }

    def changed_between(
        self, since: datetime | None, until: datetime | None
    ) -> list[EmulatedPayment]:
        return sorted(
            (
                p
                for p in self.payments.values()
                if (since is None or p.status_changed_at >= since)
                and (until is None or p.status_changed_at <= until)
            ),
            key=lambda p: p.status_changed_at,
        )

    def _new(self, request: PaymentRequest) -> EmulatedPayment:
        payment = EmulatedPayment(
            id=request.payment_id,
            store_id=self.store_id,
            order_name=request.order_name,
            total=request.amount,
            currency=request.currency,
            method=request.method,
            channel_type=request.channel_type,
        )
        self.payments[payment.id] = payment
        return payment

    def _paid(self, payment: EmulatedPayment) -> tuple[EmulatedPayment, str]:
        payment.paid_at = utc_now()
        payment.move("PAID")
        return payment, "Transaction.Paid"

    def _fail(self, payment: EmulatedPayment, reason: str) -> tuple[EmulatedPayment, str]:
        payment.failed_at = utc_now()
        payment.failure_reason = reason
        payment.move("FAILED")
        return payment, "Transaction.Failed"
