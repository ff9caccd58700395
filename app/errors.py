"""The errors a caller of this service can see, one class per problem `code`.

    ServiceError
    ├── ValidationFailed              422 VALIDATION_FAILED
    ├── Unauthorized                  401 UNAUTHORIZED
    ├── OrderNotFound                 404 ORDER_NOT_FOUND
    ├── EventNotFound                 404 EVENT_NOT_FOUND
    ├── PaymentNotPaid                409 PAYMENT_NOT_PAID        (portoneStatus, failureReason)
    ├── PaymentRejected               409 PAYMENT_REJECTED        (reason)
    ├── PaymentNotConfirmed           409 PAYMENT_NOT_CONFIRMED   (reason: PortOne's error type)
    ├── OrderClosed                   409 ORDER_CLOSED            (cancelled or expired)
    ├── OrderNotCancellable           409 ORDER_NOT_CANCELLABLE   (it took money)
    ├── OrderNotRefundable            409 ORDER_NOT_REFUNDABLE
    ├── RefundExceedsBalance          422 REFUND_EXCEEDS_BALANCE
    ├── IdempotencyKeyReused          409 IDEMPOTENCY_KEY_REUSED
    ├── RefundInProgress              409 REFUND_IN_PROGRESS      (same key, still running)
    ├── RefundConflict                409 REFUND_CONFLICT         (PortOne's balance moved)
    ├── RefundFailed                  502 REFUND_FAILED           (PortOne refused it)
    ├── WebhookSignatureInvalid       400 WEBHOOK_SIGNATURE_INVALID
    ├── WebhookPayloadInvalid         400 WEBHOOK_PAYLOAD_INVALID
    ├── PayloadTooLarge               413 PAYLOAD_TOO_LARGE       (before the body is read)
    └── DatabaseUnavailable           503 DATABASE_UNAVAILABLE    (Retry-After; reason)

PortOne's own failures are `app.portone.errors.PortOneError`s; `app.problems` renders
them as PORTONE_UNAVAILABLE (503) and PORTONE_REJECTED_CREDENTIALS (502). Nothing here
imports a web framework: services raise these, one handler renders them.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ServiceError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class ValidationFailed(ServiceError):
    status, code, title = 422, "VALIDATION_FAILED", "Request is not valid"


class Unauthorized(ServiceError):
    status, code, title = 401, "UNAUTHORIZED", "Missing or wrong bearer token"


class OrderNotFound(ServiceError):
    status, code, title = 404, "ORDER_NOT_FOUND", "Order not found"


class EventNotFound(ServiceError):
    status, code, title = 404, "EVENT_NOT_FOUND", "Order event not found"


class PaymentNotPaid(ServiceError):
    status, code, title = 409, "PAYMENT_NOT_PAID", "Payment not completed"

    def __init__(self, detail: str, *, portone_status: str | None, failure_reason: str | None):
        extra: dict[str, Any] = {"portoneStatus": portone_status}
        if failure_reason is not None:
            extra["failureReason"] = failure_reason
        super().__init__(detail, **extra)


class PaymentRejected(ServiceError):
    status, code, title = 409, "PAYMENT_REJECTED", "Payment rejected"

    def __init__(self, detail: str, *, reason: str) -> None:
        super().__init__(detail, reason=reason)


class PaymentNotConfirmed(ServiceError):
    status, code, title = 409, "PAYMENT_NOT_CONFIRMED", "PortOne refused to confirm the payment"

    def __init__(self, detail: str, *, reason: str) -> None:
        super().__init__(detail, reason=reason)


class OrderClosed(ServiceError):
    status, code, title = 409, "ORDER_CLOSED", "Order takes no payment"


class OrderNotCancellable(ServiceError):
    status, code, title = 409, "ORDER_NOT_CANCELLABLE", "Order took money: refund it instead"


class OrderNotRefundable(ServiceError):
    status, code, title = 409, "ORDER_NOT_REFUNDABLE", "Order cannot be refunded"


class RefundExceedsBalance(ServiceError):
    status, code, title = 422, "REFUND_EXCEEDS_BALANCE", "Refund exceeds what is left"


class IdempotencyKeyReused(ServiceError):
    status, code, title = 409, "IDEMPOTENCY_KEY_REUSED", "Idempotency key reused"


class RefundInProgress(ServiceError):
    status, code, title = 409, "REFUND_IN_PROGRESS", "Refund in progress"


class RefundConflict(ServiceError):
    status, code, title = 409, "REFUND_CONFLICT", "Refund conflicts with PortOne's balance"


class RefundFailed(ServiceError):
    status, code, title = 502, "REFUND_FAILED", "PortOne refused the refund"


class WebhookSignatureInvalid(ServiceError):
    status, code, title = 400, "WEBHOOK_SIGNATURE_INVALID", "Webhook signature invalid"


class WebhookPayloadInvalid(ServiceError):
    status, code, title = 400, "WEBHOOK_PAYLOAD_INVALID", "Webhook payload invalid"


class PayloadTooLarge(ServiceError):
    status, code, title = 413, "PAYLOAD_TOO_LARGE", "Payload too large"


class DatabaseUnavailable(ServiceError):
    status, code, title = 503, "DATABASE_UNAVAILABLE", "Database unavailable"
