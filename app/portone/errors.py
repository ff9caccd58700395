"""What can go wrong when talking to PortOne.

    PortOneError
    ├── PortOneUnavailable           timeout, connection error, 5xx, 429, unreadable answer
    ├── PortOneCredentialsRejected   401/403: our secret or store is wrong
    └── PortOneApiError              any other answer with PortOne's `{type, message}` body
        └── PaymentNotFound          PAYMENT_NOT_FOUND

PortOneUnavailable is the only retryable one.
"""

from __future__ import annotations


class PortOneError(Exception):
    pass


class PortOneUnavailable(PortOneError):
    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PortOneCredentialsRejected(PortOneError):
    pass


class PortOneApiError(PortOneError):
    def __init__(self, status_code: int, type_: str, message: str) -> None:
        super().__init__(f"{status_code} {type_}: {message}")
        self.status_code = status_code
        self.type = type_
        self.message = message


class PaymentNotFound(PortOneApiError):
    pass
