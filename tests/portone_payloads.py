"""PortOne V2 payment bodies as the real API returns them (every required field)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

STORE_ID = "store-test-0001"


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def payment_body(
    payment_id: str,
    *,
    status: str = "PAID",
    total: int = 10_000,
    currency: str = "KRW",
    store_id: str = STORE_ID,
    channel_type: str = "LIVE",
    status_changed_at: datetime | None = None,
    paid: int | None = None,
    cancelled: int = 0,
    virtual_account: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    changed = iso(status_changed_at or datetime.now(UTC))
    body: dict[str, Any] = {
        "status": status,
        "id": payment_id,
        "transactionId": f"tx-{payment_id}",
        "merchantId": "merchant-test",
        "storeId": store_id,
        "channel": {
            "type": channel_type,
            "id": "channel-id",
            "key": "channel-key",
            "name": "test channel",
            "pgProvider": "TOSSPAYMENTS",
            "pgMerchantId": "pg-merchant",
        },
        "version": "V2",
        "requestedAt": changed,
        "updatedAt": changed,
        "statusChangedAt": changed,
        "orderName": "Waffle trainer 2",
        "amount": {
            "total": total,
            "taxFree": 0,
            "vat": total // 11,
            "supply": total - total // 11,
            "discount": total - (paid if paid is not None else total),
            "paid": paid if paid is not None else total,
            "cancelled": cancelled,
            "cancelledTaxFree": 0,
        },
        "currency": currency,
        "customer": {"id": "customer-1"},
        "isCulturalExpense": False,
        "products": [],
        "webhooks": [],
        "disputes": [],
    }
    if virtual_account:
        body["method"] = {
            "type": "PaymentMethodVirtualAccount",
            "bank": "SHINHAN",
            "accountNumber": "56211234567890",
            "accountType": "NORMAL",
            "remitteeName": "Waffle Shop",
            "expiredAt": "2026-12-01T00:00:00Z",
            "issuedAt": changed,
        }
    else:
        body["method"] = {"type": "PaymentMethodCard", "card": {"number": "53275019****1234"}}
    if status in {"PAID", "PARTIAL_CANCELLED", "CANCELLED"}:
        body["paidAt"] = changed
    if status == "FAILED":
        body["failedAt"] = changed
        body["failure"] = {"reason": "카드 한도 초과", "pgCode": "LIMIT", "pgMessage": "limit"}
    if status in {"PARTIAL_CANCELLED", "CANCELLED"}:
        body["cancelledAt"] = changed
        body["cancellations"] = [
            {
                "status": "SUCCEEDED",
                "id": "cancel-1",
                "totalAmount": cancelled,
                "taxFreeAmount": 0,
                "vatAmount": 0,
                "reason": "customer asked",
                "requestedAt": changed,
                "cancelledAt": changed,
            }
        ]
    body.update(extra)
    return body
