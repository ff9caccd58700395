"""The emulator's payments, as PortOne's API shows them.

Bodies carry every field PortOne's V2 OpenAPI document (the extract in
`tests/portone/reference/`) and the official SDK require for each status. `state()` and
`restored()` carry a payment across restarts of the sandbox (`app.sandbox.store`).
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, Literal

from app.times import rfc3339, utc_now

Method = Literal["CARD", "VIRTUAL_ACCOUNT"]


def _time(at: datetime | None) -> str | None:
    return rfc3339(at) if at else None


@dataclass
class Cancellation:
    id: str
    amount: int
    reason: str
    requested_at: datetime
    status: str = "SUCCEEDED"  # REQUESTED, SUCCEEDED, FAILED
    settled_at: datetime | None = None

    def body(self) -> dict[str, Any]:
        body = {
            "status": self.status,
            "id": self.id,
            "totalAmount": self.amount,
            "taxFreeAmount": 0,
            "vatAmount": self.amount // 11,
            "reason": self.reason,
            "requestedAt": _time(self.requested_at),
        }
        if self.status == "SUCCEEDED":
            body["cancelledAt"] = _time(self.settled_at)
        return body


@dataclass
class Dispute:
    reason: str
    created_at: datetime
    resolved_at: datetime | None = None

    def body(self) -> dict[str, Any]:
        body = {
            "status": "RESOLVED" if self.resolved_at else "UNRESOLVED",
            "reason": self.reason,
            "createdAt": _time(self.created_at),
        }
        if self.resolved_at:
            body["resolvedAt"] = _time(self.resolved_at)
        return body


@dataclass
class PaymentRequest:
    """What the customer's browser asks PortOne for."""

    payment_id: str
    order_name: str
    amount: int
    currency: str
    method: Method
    channel_type: str
    manual: bool = False  # a channel with manual confirmation: charged once confirmed


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
    updated_at: datetime = field(default_factory=utc_now)
    transaction_id: str = field(default_factory=lambda: "tx_" + secrets.token_hex(10))
    paid_at: datetime | None = None
    failed_at: datetime | None = None
    failure_reason: str | None = None
    cancellations: list[Cancellation] = field(default_factory=list)
    disputes: list[Dispute] = field(default_factory=list)
    account_number: str = field(default_factory=lambda: "5621" + str(secrets.randbelow(10**10)))
    # The status PortOne answers this payment's next cancellation with (a sandbox control).
    next_cancellation: str | None = None
    # Manual confirmation: the token the payment window gave the browser, until confirmed.
    payment_token: str | None = None

    @property
    def cancelled(self) -> int:
        return sum(c.amount for c in self.cancellations if c.status == "SUCCEEDED")

    @property
    def cancellable(self) -> int:
        """What is left to cancel: money being cancelled is not there to cancel again."""
        held = sum(c.amount for c in self.cancellations if c.status == "REQUESTED")
        return self.total - self.cancelled - held

    def touch(self) -> None:
        # Strictly increasing as the bodies write it (to the millisecond), so snapshots
        # order even when two changes fall within one.
        self.updated_at = max(utc_now(), self.updated_at + timedelta(milliseconds=1))

    def move(self, status: str) -> None:
        self.status = status
        self.touch()
        self.status_changed_at = self.updated_at

    def cancellation(self, cancellation_id: str) -> Cancellation | None:
        return next((c for c in self.cancellations if c.id == cancellation_id), None)

    def body(self) -> dict[str, Any]:
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
            "requestedAt": _time(self.requested_at),
            "updatedAt": _time(self.updated_at),
            "statusChangedAt": _time(self.status_changed_at),
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
            body["paidAt"] = _time(self.paid_at)
            body["disputes"] = [dispute.body() for dispute in self.disputes]
            body["receiptUrl"] = f"https://sandbox.invalid/receipts/{self.id}"
        if self.status == "FAILED":
            body["failedAt"] = _time(self.failed_at)
            body["failure"] = {"reason": self.failure_reason, "pgCode": "SANDBOX"}
        if self.cancellations:
            body["cancellations"] = [c.body() for c in self.cancellations]
            settled = [c.settled_at for c in self.cancellations if c.settled_at]
            body["cancelledAt"] = _time(max(settled) if settled else self.updated_at)
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
            "expiredAt": _time(self.requested_at + timedelta(days=3)),
            "issuedAt": _time(self.requested_at),
        }

    def state(self) -> dict[str, Any]:
        """Everything about the payment, as JSON."""
        state: dict[str, Any] = _jsonable(asdict(self))
        return state

    @classmethod
    def restored(cls, state: dict[str, Any]) -> EmulatedPayment:
        values = {f.name: state[f.name] for f in fields(cls) if f.name in state}
        for name in ("requested_at", "status_changed_at", "updated_at", "paid_at", "failed_at"):
            values[name] = _instant(values.get(name))
        values["cancellations"] = [
            Cancellation(
                **c
                | {
                    "requested_at": _instant(c["requested_at"]),
                    "settled_at": _instant(c["settled_at"]),
                }
            )
            for c in state.get("cancellations", [])
        ]
        values["disputes"] = [
            Dispute(
                **d
                | {
                    "created_at": _instant(d["created_at"]),
                    "resolved_at": _instant(d["resolved_at"]),
                }
            )
            for d in state.get("disputes", [])
        ]
        return cls(**values)


def _instant(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value
