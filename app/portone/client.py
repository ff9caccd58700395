"""Typed calls to PortOne's V2 REST API over one shared httpx transport."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import stamina
from httpx_aiohttp import AiohttpTransport
from pydantic import BaseModel, ValidationError

from app.portone.errors import (
    PaymentNotFound,
    PortOneApiError,
    PortOneCredentialsRejected,
    PortOneUnavailable,
)
from app.portone.models import (
    CancelPaymentResponse,
    Payment,
    PaymentCancellation,
    PaymentPage,
    PortOneErrorBody,
    RawPaymentPage,
    RefundAccount,
)

Model = TypeVar("Model", bound=BaseModel)

TIMEOUT = httpx.Timeout(10.0, connect=3.0)
READ_ATTEMPTS = 3


LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100)


def default_transport() -> httpx.AsyncBaseTransport:
    """httpx's API over aiohttp's connection pool.

    httpx's own pool (httpcore) spends about 1.5 ms of CPU per request under a few dozen
    concurrent callers (encode/httpx#3215); aiohttp's spends a fifth of that.
    """
    return AiohttpTransport(limits=LIMITS)


class PortOneHttp:
    """httpx's transport API with PortOne's base URL, credentials and timeouts fixed.

    Written by hand because `httpx.AsyncClient` spends ~0.17 ms of CPU per call around its
    transport (URL merging, cookie jar, auth and redirect machinery that PortOne's API never
    needs), about a tenth of a whole verification. Requests and responses are still httpx's,
    so every httpx transport, and respx in the tests, work as before.
    """

    def __init__(self, base_url: str, secret: str, transport: httpx.AsyncBaseTransport) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = httpx.Headers(
            {
                "Authorization": f"PortOne {secret}",
                "Accept": "application/json",
                # What httpx can decode (the transport would offer more), as AsyncClient did.
                "Accept-Encoding": "gzip, deflate",
                "User-Agent": f"python-httpx/{httpx.__version__}",
            }
        )
        self._transport = transport

    async def request(
        self, method: str, path: str, *, params: dict[str, str] | None = None, json: Any = None
    ) -> httpx.Response:
        """The whole answer, read; transport failures raise `httpx.TransportError`."""
        request = httpx.Request(
            method,
            self._base_url + path,
            params=params,
            json=json,
            headers=self._headers,
            extensions={"timeout": TIMEOUT.as_dict()},
        )
        response = await self._transport.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> PortOneHttp:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def new_http_client(
    base_url: str, secret: str, transport: httpx.AsyncBaseTransport | None = None
) -> PortOneHttp:
    """The one client the process shares; the lifespan owns and closes it."""
    return PortOneHttp(base_url, secret, transport or default_transport())


def payment_path(payment_id: str, *rest: str) -> str:
    # One path segment whatever the id holds: "/", "?", "#", and dot segments that a
    # URL normaliser would otherwise resolve ("..": the payments list).
    segment = quote(payment_id, safe="")
    if segment in {".", ".."}:
        segment = segment.replace(".", "%2E")
    return "/".join(("/payments", segment, *rest))


class _RetryableStatus(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"PortOne answered {response.status_code}")
        self.response = response


Observer = Callable[[str, str, float], None]
"""Told of every call: operation, HTTP status (or "error"), seconds."""


class PortOneClient:
    def __init__(
        self, http: PortOneHttp, *, store_id: str, observe: Observer | None = None
    ) -> None:
        self._http = http
        self._store_id = store_id
        self._observe = observe

    async def get_payment(self, payment_id: str) -> Payment:
        response = await self._read("get_payment", "GET", payment_path(payment_id))
        return _parse(response, Payment)

    async def list_payments(self, body: dict[str, Any]) -> PaymentPage:
        # PortOne takes the options of this GET as JSON in the `requestBody` query parameter.
        params = {"requestBody": json.dumps(body, separators=(",", ":"))}
        response = await self._read("list_payments", "GET", "/payments", params=params)
        return _parse(response, RawPaymentPage).read()

    async def cancel_payment(
        self,
        payment_id: str,
        *,
        reason: str,
        current_cancellable_amount: int,
        amount: int | None = None,
        refund_account: RefundAccount | None = None,
    ) -> PaymentCancellation:
        body: dict[str, Any] = {
            "storeId": self._store_id,
            "reason": reason,
            "currentCancellableAmount": current_cancellable_amount,
        }
        if amount is not None:
            body["amount"] = amount
        if refund_account is not None:
            body["refundAccount"] = refund_account.model_dump(by_alias=True, exclude_none=True)
        response = await self._write(
            "cancel_payment", "POST", payment_path(payment_id, "cancel"), json=body
        )
        return _parse(response, CancelPaymentResponse).cancellation

    async def close_virtual_account(self, payment_id: str) -> None:
        path = payment_path(payment_id, "virtual-account", "close")
        await self._write("close_virtual_account", "POST", path, params={"storeId": self._store_id})

    async def pre_register(self, payment_id: str, *, total_amount: int, currency: str) -> None:
        body = {"storeId": self._store_id, "totalAmount": total_amount, "currency": currency}
        await self._write(
            "pre_register", "POST", payment_path(payment_id, "pre-register"), json=body
        )

    async def _read(self, operation: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A read is safe to repeat: retry network errors, 5xx and 429 with jittered backoff."""
        try:
            async for attempt in stamina.retry_context(
                on=(httpx.TransportError, _RetryableStatus),
                attempts=READ_ATTEMPTS,
                timeout=20.0,
                wait_initial=0.1,
                wait_max=1.0,
            ):
                with attempt:
                    response = await self._send(operation, method, path, **kwargs)
                    if _is_retryable(response):
                        raise _RetryableStatus(response)
        except _RetryableStatus as exc:
            raise _unavailable(exc.response) from None
        except httpx.TransportError as exc:
            raise _unreachable(exc) from exc
        return _checked(response)

    async def _write(self, operation: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Writes are not retried here: their callers persist what is owed and retry later."""
        try:
            response = await self._send(operation, method, path, **kwargs)
        except httpx.TransportError as exc:
            raise _unreachable(exc) from exc
        if _is_retryable(response):
            raise _unavailable(response)
        return _checked(response)

    async def _send(self, operation: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        started = time.perf_counter()
        status = "error"
        try:
            response = await self._http.request(method, path, **kwargs)
            status = str(response.status_code)
            return response
        finally:
            if self._observe is not None:
                self._observe(operation, status, time.perf_counter() - started)


def _unreachable(exc: httpx.TransportError) -> PortOneUnavailable:
    what = "timed out" if isinstance(exc, httpx.TimeoutException) else "unreachable"
    return PortOneUnavailable(f"PortOne {what} ({type(exc).__name__})")


def _is_retryable(response: httpx.Response) -> bool:
    return response.status_code == 429 or response.status_code >= 500


def _unavailable(response: httpx.Response) -> PortOneUnavailable:
    retry_after = response.headers.get("Retry-After", "")
    return PortOneUnavailable(
        f"PortOne answered {response.status_code}",
        retry_after=int(retry_after) if retry_after.isdigit() else None,
    )


def _checked(response: httpx.Response) -> httpx.Response:
    if response.is_success:
        return response
    if response.status_code in (401, 403):
        raise PortOneCredentialsRejected(f"PortOne answered {response.status_code}")
    try:
        error = PortOneErrorBody.model_validate_json(response.content)
    except ValidationError:
        raise PortOneUnavailable(
            f"PortOne answered {response.status_code} without an error body"
        ) from None
    if error.type == "PAYMENT_NOT_FOUND":
        raise PaymentNotFound(response.status_code, error.type, error.message)
    raise PortOneApiError(response.status_code, error.type, error.message)


def _parse(response: httpx.Response, model: type[Model]) -> Model:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise PortOneUnavailable(f"PortOne's answer is not a {model.__name__}") from exc
