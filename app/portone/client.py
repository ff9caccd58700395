"""Typed calls to PortOne's V2 REST API through one shared `httpx.AsyncClient`.

The client is the same in every mode; only its transport differs: aiohttp's connection
pool in production (`httpx_aiohttp`), the in-process emulator in the sandbox, respx in
the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

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
READ_BUDGET_SECONDS = 20.0  # for all attempts of one read, backoff included
MAX_IN_FLIGHT = 100
# Idle connections are dropped before a load balancer would drop them under a write
# (a write is never retried).
KEEPALIVE_SECONDS = 5.0


def new_http_client(
    base_url: str,
    secret: str,
    transport: httpx.AsyncBaseTransport | None = None,
    *,
    max_connections: int = MAX_IN_FLIGHT,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncClient:
    """The one client the process shares (the lifespan owns and closes it).

    Without a transport, PortOne is reached through aiohttp's pool, which costs far less
    CPU per call under concurrency than httpx's own (bench/README.md).
    """
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        headers={
            "Authorization": f"PortOne {secret}",
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": "portone-verifier",
        },
        timeout=TIMEOUT,
        transport=transport
        or AiohttpTransport(
            verify=verify,
            limits=httpx.Limits(
                max_connections=max_connections, keepalive_expiry=KEEPALIVE_SECONDS
            ),
        ),
        follow_redirects=False,
    )


def payment_path(payment_id: str, *rest: str) -> str:
    """`/payments/{id}/…` with the id as one percent-encoded segment.

    "/", "?", "#" and the rest are encoded; a dot segment ("." or "..") cannot be sent
    at all (aiohttp's URLs resolve it, even encoded), and no order has one: this
    service makes every paymentId itself.
    """
    if payment_id in {".", ".."}:
        raise ValueError(f"{payment_id!r} cannot be sent as a path segment")
    return "/".join(("/payments", quote(payment_id, safe=""), *rest))


OUTSTANDING = "IDEMPOTENCY_OUTSTANDING_REQUEST"
IDEMPOTENCY_WINDOW = timedelta(hours=3)
"""How long PortOne replays the first answer to an Idempotency-Key."""
# The card company declined at approval: PortOne answers 502, yet nothing is left to retry.
PG_REFUSALS = frozenset({"PG_PROVIDER"})


class _RetryableStatus(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"PortOne answered {response.status_code}")
        self.response = response


Observer = Callable[[str, str, float], None]
"""Told of every call: operation, HTTP status (or "error", or "refused" by the cap), seconds."""

CAP_WAIT_SECONDS = 1.0  # a call waits this long for a free slot, then is refused


class Cap:
    """At most `size` calls to PortOne in flight in this process (one a connection of the
    pool); one more waits a moment for a slot and is then refused (as PortOne unavailable),
    so a flood of calls costs neither PortOne's rate limit nor an unbounded queue."""

    def __init__(self, size: int, *, on_wait: Callable[[], object] | None = None) -> None:
        self._slots = asyncio.Semaphore(size)
        self._on_wait = on_wait

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._slots.locked():
            if self._on_wait is not None:
                self._on_wait()
            try:
                await asyncio.wait_for(self._slots.acquire(), CAP_WAIT_SECONDS)
            except TimeoutError:
                raise PortOneUnavailable(
                    "too many calls to PortOne in flight in this process", retry_after=1
                ) from None
        else:
            await self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()


class PortOneClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        store_id: str,
        cap: Cap | None = None,
        observe: Observer | None = None,
    ) -> None:
        self._http = http
        self._cap = cap or Cap(MAX_IN_FLIGHT)
        self._store_id = store_id
        self._store = {"storeId": store_id}
        # Written into the path once: httpx merges a `params` mapping anew on every call.
        self._store_query = "?" + urlencode(self._store)
        self._observe = observe

    async def get_payment(self, payment_id: str) -> Payment:
        # storeId on every read: an agency's or a multi-store secret has no store of its own.
        path = payment_path(payment_id) + self._store_query
        response = await self._read("get_payment", "GET", path)
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
        idempotency_key: str,
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
        path = payment_path(payment_id, "cancel")
        response = await self._write("cancel_payment", path, idempotency_key, json=body)
        return _parse(response, CancelPaymentResponse).cancellation

    async def close_virtual_account(self, payment_id: str, *, idempotency_key: str) -> None:
        path = payment_path(payment_id, "virtual-account", "close")
        await self._write("close_virtual_account", path, idempotency_key, params=self._store)

    async def pre_register(
        self, payment_id: str, *, total_amount: int, currency: str, idempotency_key: str
    ) -> None:
        body = {"storeId": self._store_id, "totalAmount": total_amount, "currency": currency}
        path = payment_path(payment_id, "pre-register")
        await self._write("pre_register", path, idempotency_key, json=body)

    async def confirm_payment(
        self,
        payment_id: str,
        *,
        payment_token: str,
        tx_id: str | None,
        total_amount: int,
        currency: str,
        is_test: bool | None,
        idempotency_key: str,
    ) -> None:
        """Manual confirmation: PortOne charges the payment only if it matches these terms
        (it refuses with INFORMATION_MISMATCH otherwise); a term given as None is not
        checked."""
        body: dict[str, Any] = {
            "storeId": self._store_id,
            "paymentToken": payment_token,
            "totalAmount": total_amount,
            "currency": currency,
        }
        if is_test is not None:
            body["isTest"] = is_test
        if tx_id is not None:
            body["txId"] = tx_id
        path = payment_path(payment_id, "confirm")
        await self._write("confirm_payment", path, idempotency_key, json=body, refusals=PG_REFUSALS)

    async def _read(self, operation: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A read is safe to repeat: retry network errors, 5xx and 429 with jittered backoff.

        The first attempt runs outside stamina: its retry context costs CPU on every call
        (bench/README.md), and only a failed attempt needs it.
        """
        started = time.monotonic()
        try:
            return _checked(await self._attempt(operation, method, path, **kwargs))
        except (httpx.TransportError, _RetryableStatus) as exc:
            failure = exc
        # The first attempt spent part of the budget.
        budget = READ_BUDGET_SECONDS - (time.monotonic() - started)
        try:
            if budget <= 0:
                raise failure
            async for attempt in stamina.retry_context(
                on=(httpx.TransportError, _RetryableStatus),
                attempts=READ_ATTEMPTS,
                timeout=budget,
                wait_initial=0.1,
                wait_max=1.0,
            ):
                with attempt:
                    if attempt.num == 1:
                        raise failure  # the attempt above: stamina counts it and backs off
                    response = await self._attempt(operation, method, path, **kwargs)
        except _RetryableStatus as exc:
            raise _unavailable(exc.response) from None
        except httpx.TransportError as exc:
            raise _unreachable(exc) from exc
        return _checked(response)

    async def _attempt(
        self, operation: str, method: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        response = await self._send(operation, method, path, **kwargs)
        if _is_retryable(response):
            raise _RetryableStatus(response)
        return response

    async def _write(
        self,
        operation: str,
        path: str,
        idempotency_key: str,
        *,
        refusals: frozenset[str] = frozenset(),
        **kwargs: Any,
    ) -> httpx.Response:
        """A POST with PortOne's `Idempotency-Key`: the same key for every retry of one intent
        (one refund, one compensation attempt), so a retry whose earlier answer was lost
        gets PortOne's first answer back instead of acting twice. Not retried here: the
        callers persist what is owed and retry later, with the same key. `refusals`: the
        error types that are PortOne's final answer even with a 5xx status."""
        headers = {"Idempotency-Key": idempotency_header(idempotency_key)}
        try:
            response = await self._send(operation, "POST", path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise _unreachable(exc) from exc
        if _is_retryable(response) and not (refusals and _error_type(response) in refusals):
            raise _unavailable(response)
        return _checked(response)

    async def _send(self, operation: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        started = time.perf_counter()
        status = "refused"
        try:
            async with self._cap.slot():
                status = "error"
                if self._http.is_closed:
                    raise httpx.ConnectError("the PortOne client is closed")
                response = _unlinked(await self._http.request(method, path, **kwargs))
                status = str(response.status_code)
                return response
        finally:
            if self._observe is not None:
                self._observe(operation, status, time.perf_counter() - started)


def _unlinked(response: httpx.Response) -> httpx.Response:
    """`response`, read and closed, with its body as plain bytes. httpx wraps every body in
    a stream that points back at its response: a reference cycle, which holds the whole
    request and response (~40 objects, aiohttp's included) until the garbage collector
    runs, and makes every collection longer (bench/README.md, "The tail"). Once read, the
    body needs no stream."""
    response.stream = httpx.ByteStream(response.content)
    return response


def idempotency_header(key: str) -> str:
    """PortOne's `Idempotency-Key` value: 16 to 256 printable ASCII characters, as an RFC 8941
    string (double-quoted)."""
    printable = key.isascii() and key.isprintable() and '"' not in key and "\\" not in key
    if not (16 <= len(key) <= 256 and printable):
        raise ValueError(f"not an Idempotency-Key PortOne takes: {key!r}")
    return f'"{key}"'


def _unreachable(exc: httpx.TransportError) -> PortOneUnavailable:
    # aiohttp's transport reports a refused connection as a ConnectTimeout too; its cause
    # tells the two apart.
    cause = exc.__cause__
    timed_out = isinstance(exc, httpx.TimeoutException) and (
        cause is None or isinstance(cause, TimeoutError)
    )
    what = "timed out" if timed_out else "unreachable"
    return PortOneUnavailable(f"PortOne {what} ({type(cause or exc).__name__})")


def _is_retryable(response: httpx.Response) -> bool:
    return response.status_code == 429 or response.status_code >= 500


def _unavailable(response: httpx.Response) -> PortOneUnavailable:
    retry_after = response.headers.get("Retry-After", "")
    return PortOneUnavailable(
        f"PortOne answered {response.status_code}",
        retry_after=int(retry_after) if retry_after.isdigit() else None,
    )


def _error_type(response: httpx.Response) -> str | None:
    try:
        return PortOneErrorBody.model_validate_json(response.content).type
    except ValidationError:
        return None


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
    if error.type == OUTSTANDING:
        # The first request with this key is still running at PortOne: like a timeout.
        raise PortOneUnavailable("PortOne is still running this request", retry_after=1)
    raise PortOneApiError(response.status_code, error.type, error.message)


def _parse(response: httpx.Response, model: type[Model]) -> Model:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise PortOneUnavailable(f"PortOne's answer is not a {model.__name__}") from exc
