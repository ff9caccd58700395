"""An in-memory PortOne V2: payments, their state changes, and PortOne's refusals.

Every change returns the payment and the webhook types it causes, for the caller to
keep and announce (`app.sandbox.state.Sandbox.changed`); the emulator itself does no I/O.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from app.sandbox.payments import Cancellation, Dispute, EmulatedPayment, PaymentRequest
from app.times import utc_now

CANCEL_PENDING = "Transaction.CancelPending"
CANCELLED = "Transaction.Cancelled"
PARTIAL_CANCELLED = "Transaction.PartialCancelled"
SORTED_BY = {"STATUS_CHANGED_AT": "status_changed_at", "REQUESTED_AT": "requested_at"}

Change = tuple[EmulatedPayment, list[str]]


class EmulatorError(Exception):
    """A refusal in PortOne's own shape: HTTP status, `type`, `message`."""

    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message


def _same(secret: str, presented: str) -> bool:
    return hmac.compare_digest(secret.encode(), presented.encode())


def _instant(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("not a date-time")
    return datetime.fromisoformat(value)


class Emulator:
    """PortOne's state machine for one store."""

    def __init__(self, store_id: str, payments: Iterable[EmulatedPayment] = ()) -> None:
        self.store_id = store_id
        self.payments: dict[str, EmulatedPayment] = {p.id: p for p in payments}
        self.pre_registered: dict[str, tuple[int, str]] = {}

    def get(self, payment_id: str, store_id: str | None = None) -> EmulatedPayment:
        payment = self.payments.get(payment_id)
        if payment is None or (store_id is not None and store_id != payment.store_id):
            raise EmulatorError(404, "PAYMENT_NOT_FOUND", "결제 건이 존재하지 않습니다.")
        return payment

    def pre_register(self, payment_id: str, amount: int, currency: str) -> None:
        existing = self.payments.get(payment_id)
        if existing is not None and existing.paid_at is not None:
            raise EmulatorError(409, "ALREADY_PAID", "결제가 이미 완료되었습니다.")
        self.pre_registered[payment_id] = (amount, currency)

    def pay(self, request: PaymentRequest) -> Change:
        current = self.payments.get(request.payment_id)
        if current is not None and current.status not in ("READY", "FAILED"):
            raise EmulatorError(409, "ALREADY_PAID", "결제가 이미 진행되었습니다.")
        payment = self._new(request)
        expected = self.pre_registered.get(payment.id)
        if expected is not None and expected != (request.amount, request.currency):
            # PortOne refuses an amount that differs from the pre-registered one.
            return self._fail(payment, "사전 등록된 결제 정보와 일치하지 않습니다.")
        if request.manual:
            # Authenticated, not charged: READY until the merchant's server confirms it.
            payment.payment_token = "ptkn_" + secrets.token_urlsafe(24)
            return payment, []
        return self._charged(payment)

    def confirm(
        self,
        payment_id: str,
        *,
        payment_token: str,
        total_amount: int | None,
        currency: str | None,
        is_test: bool | None,
    ) -> Change:
        """The merchant's server confirms a manually confirmed payment; PortOne charges it
        only when every term sent matches what the customer authorized."""
        payment = self.get(payment_id)
        if payment.paid_at is not None or payment.status == "VIRTUAL_ACCOUNT_ISSUED":
            raise EmulatorError(409, "ALREADY_PAID", "결제가 이미 완료되었습니다.")
        token = payment.payment_token
        if payment.status != "READY" or token is None or not _same(token, payment_token):
            raise EmulatorError(400, "INVALID_PAYMENT_TOKEN", "유효하지 않은 결제 토큰입니다.")
        authorized = (payment.total, payment.currency, payment.channel_type == "TEST")
        sent = (total_amount, currency, is_test)
        if any(v is not None and v != a for v, a in zip(sent, authorized, strict=True)):
            raise EmulatorError(409, "INFORMATION_MISMATCH", "결제 정보가 일치하지 않습니다.")
        payment.payment_token = None
        return self._charged(payment)

    def deposit(self, payment_id: str) -> Change:
        payment = self.get(payment_id)
        if payment.status != "VIRTUAL_ACCOUNT_ISSUED":
            raise EmulatorError(
                409, "PAYMENT_NOT_WAITING_FOR_DEPOSIT", "입금 대기 상태가 아닙니다."
            )
        return self._paid(payment)

    def fail(self, request: PaymentRequest, reason: str) -> Change:
        """The attempt fails; a payment never started is created for the order first."""
        payment = self.payments.get(request.payment_id)
        if payment is None:
            payment = self._new(request)
        elif payment.status not in ("READY", "VIRTUAL_ACCOUNT_ISSUED", "PAY_PENDING"):
            raise EmulatorError(409, "PAYMENT_NOT_FAILABLE", f"payment is {payment.status}")
        return self._fail(payment, reason)

    def answer_next_cancellation(self, payment_id: str, status: str) -> EmulatedPayment:
        """The next cancellation of this payment is answered `status` (REQUESTED, FAILED)."""
        payment = self.get(payment_id)
        payment.next_cancellation = status
        return payment

    def cancel(
        self,
        payment_id: str,
        *,
        amount: int | None,
        reason: str,
        current_cancellable_amount: int | None = None,
    ) -> tuple[EmulatedPayment, Cancellation, list[str]]:
        payment = self.get(payment_id)
        if payment.status == "CANCELLED":
            raise EmulatorError(409, "PAYMENT_ALREADY_CANCELLED", "결제가 이미 취소되었습니다.")
        if payment.status not in ("PAID", "PARTIAL_CANCELLED"):
            raise EmulatorError(409, "PAYMENT_NOT_PAID", "결제가 완료되지 않았습니다.")
        cancellable = payment.cancellable
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
        status, payment.next_cancellation = payment.next_cancellation or "SUCCEEDED", None
        cancellation = Cancellation("cancel_" + secrets.token_hex(8), amount, reason, utc_now())
        payment.cancellations.append(cancellation)
        payment.touch()
        if status == "REQUESTED":
            cancellation.status = "REQUESTED"
            return payment, cancellation, [CANCEL_PENDING]
        return payment, cancellation, self._settle(payment, cancellation, status)

    def settle(self, payment_id: str, cancellation_id: str, status: str) -> Change:
        """PortOne settles a REQUESTED cancellation: SUCCEEDED or FAILED."""
        payment = self.get(payment_id)
        cancellation = payment.cancellation(cancellation_id)
        if cancellation is None:
            raise EmulatorError(404, "CANCELLATION_NOT_FOUND", "취소 내역이 존재하지 않습니다.")
        if cancellation.status != "REQUESTED":
            raise EmulatorError(409, "CANCELLATION_NOT_PENDING", "취소 요청 상태가 아닙니다.")
        return payment, self._settle(payment, cancellation, status)

    def dispute(self, payment_id: str, status: str, reason: str) -> Change:
        """The card company opens a dispute (UNRESOLVED), or resolves the open one."""
        payment = self.get(payment_id)
        if payment.paid_at is None:
            raise EmulatorError(409, "PAYMENT_NOT_PAID", "결제가 완료되지 않았습니다.")
        now = utc_now()
        payment.touch()
        if status == "UNRESOLVED":
            payment.disputes.append(Dispute(reason, now))
            return payment, ["Transaction.DisputeCreated"]
        open_ = [dispute for dispute in payment.disputes if dispute.resolved_at is None]
        if not open_:
            payment.disputes.append(Dispute(reason, now))
            open_ = payment.disputes[-1:]
        open_[-1].resolved_at = now
        return payment, ["Transaction.DisputeResolved"]

    def close_virtual_account(self, payment_id: str) -> Change:
        payment = self.get(payment_id)
        if payment.status != "VIRTUAL_ACCOUNT_ISSUED":
            raise EmulatorError(
                409, "PAYMENT_NOT_WAITING_FOR_DEPOSIT", "입금 대기 상태가 아닙니다."
            )
        now = utc_now()
        payment.cancellations.append(
            Cancellation("close_" + secrets.token_hex(8), 0, "closed", now, settled_at=now)
        )
        payment.move("CANCELLED")
        return payment, [CANCELLED]

    def list_page(self, request_body: str | None) -> dict[str, Any]:
        """PortOne's `GET /payments` answer for its `requestBody` query parameter."""
        try:
            options = json.loads(request_body or "{}")
            page = options.get("page") or {}
            number, size = int(page.get("number", 0)), int(page.get("size", 10))
            filters = options.get("filter") or {}
            since, until = _instant(filters.get("from")), _instant(filters.get("until"))
            key = SORTED_BY[filters.get("timestampType") or "STATUS_CHANGED_AT"]
            order_by = SORTED_BY[filters.get("sortBy") or "STATUS_CHANGED_AT"]
            descending = (filters.get("sortOrder") or "DESC") == "DESC"
        except (ValueError, TypeError, AttributeError, KeyError):
            raise EmulatorError(400, "INVALID_REQUEST", "requestBody is not valid") from None
        matching = sorted(
            (
                p
                for p in self.payments.values()
                if (since is None or getattr(p, key) >= since)
                and (until is None or getattr(p, key) <= until)
            ),
            key=lambda p: (getattr(p, order_by), p.id),
            reverse=descending,
        )
        return {
            "items": [payment.body() for payment in matching[number * size : (number + 1) * size]],
            "page": {"number": number, "size": size, "totalCount": len(matching)},
        }

    def _settle(
        self, payment: EmulatedPayment, cancellation: Cancellation, status: str
    ) -> list[str]:
        cancellation.status = status
        cancellation.settled_at = utc_now()
        if status != "SUCCEEDED":
            # PortOne sends no webhook for a cancellation that failed: the reconciler, which
            # re-reads every refund left REQUESTED, finds it.
            payment.touch()
            return []
        if payment.cancelled == payment.total:
            payment.move("CANCELLED")
            return [CANCELLED]
        payment.move("PARTIAL_CANCELLED")
        return [PARTIAL_CANCELLED]

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

    def _charged(self, payment: EmulatedPayment) -> Change:
        if payment.method == "VIRTUAL_ACCOUNT":
            payment.move("VIRTUAL_ACCOUNT_ISSUED")
            return payment, ["Transaction.VirtualAccountIssued"]
        return self._paid(payment)

    def _paid(self, payment: EmulatedPayment) -> Change:
        payment.paid_at = utc_now()
        payment.move("PAID")
        return payment, ["Transaction.Paid"]

    def _fail(self, payment: EmulatedPayment, reason: str) -> Change:
        payment.failed_at = utc_now()
        payment.failure_reason = reason
        payment.move("FAILED")
        return payment, ["Transaction.Failed"]
