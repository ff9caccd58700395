"""Typed calls to PortOne's V2 REST API over one shared connection pool.

Production talks to PortOne through aiohttp (`AiohttpWire`); the sandbox's in-process
emulator and the tests' respx mocks are reached through any httpx transport (`HttpxWire`).
Above the wire, one `PortOneClient` builds every call and reads every answer.
"""

from __future__ import annotations

import json
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self, TypeVar
from urllib.parse import quote

import aiohttp
import certifi
import httpx
import stamina
import yarl
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
MAX_CONNECTIONS = 100


@dataclass(frozen=True, slots=True)
class Reply:
    """PortOne's answer, read whole."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive, as both wires give them
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300


class NoAnswer(Exception):
    """PortOne could not be reached or did not answer in time (nothing was read)."""

    def __init__(self, cause: BaseException, *, timed_out: bool) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.timed_out = timed_out


class Wire(ABC):
    """How requests reach PortOne: one connection pool, its base URL and credentials fixed."""

    @abstractmethod
    async def request(
        self, method: str, path: str, *, params: dict[str, str] | None = None, json: Any = None
    ) -> Reply:
        """The whole answer to `method` base_url+path; `NoAnswer` when there is none."""

    @abstractmethod
    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _headers(secret: str) -> dict[str, str]:
    return {
        "Authorization": f"PortOne {secret}",
        "Accept": "application/json",
        # Only what both wires decode (aiohttp would offer br or zstd where installed).
        "Accept-Encoding": "gzip, deflate",
        "User-Agent": "portone-verifier",
    }


class AiohttpWire(Wire):
    """Production's wire: aiohttp's client, keep-alive pool of `MAX_CONNECTIONS`.

    Chosen by measurement (bench/run.py, issue 8): httpx's own pool cost ~1.5 ms of CPU
    per call under 32 concurrent callers (encode/httpx#3215), and httpx over an aiohttp
    transport still ~1 ms more per completion than aiohttp alone, which builds each
    request and response once instead of once per library.
    """

    def __init__(self, base_url: str, secret: str) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = _headers(secret)
        self._timeout = aiohttp.ClientTimeout(
            connect=TIMEOUT.pool, sock_connect=TIMEOUT.connect, sock_read=TIMEOUT.read
        )
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Made on first use, inside the event loop that will run it.
        if self._session is not None and self._session.closed:
            raise NoAnswer(RuntimeError("the PortOne client is closed"), timed_out=False)
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                # As httpx had it: idle connections dropped after 5 s (before a load
                # balancer drops them under a write, which is not retried), certifi's CAs.
                connector=aiohttp.TCPConnector(
                    limit=MAX_CONNECTIONS,
                    keepalive_timeout=5.0,
                    ssl=ssl.create_default_context(cafile=certifi.where()),
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def request(
        self, method: str, path: str, *, params: dict[str, str] | None = None, json: Any = None
    ) -> Reply:
        # Already encoded: the payment id is one percent-encoded segment that must reach
        # PortOne as it is (yarl would otherwise re-quote it and resolve dot segments).
        url = yarl.URL(self._base_url + path, encoded=True)
        if params:
            url = url.extend_query(params)
        try:
            async with self._open().request(
                method, url, json=json, allow_redirects=False
            ) as response:
                return Reply(response.status, response.headers, await response.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NoAnswer(exc, timed_out=isinstance(exc, TimeoutError)) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class HttpxWire(Wire):
    """Any httpx transport as a wire: the sandbox's ASGI emulator, respx in the tests."""

    def __init__(self, base_url: str, secret: str, transport: httpx.AsyncBaseTransport) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=_headers(secret),
            timeout=TIMEOUT,
            transport=transport,
        )

    async def request(
        self, method: str, path: str, *, params: dict[str, str] | None = None, json: Any = None
    ) -> Reply:
        try:
            response = await self._client.request(method, path, params=params, json=json)
        except httpx.TransportError as exc:
            timed_out = isinstance(exc, httpx.TimeoutException)
            raise NoAnswer(exc, timed_out=timed_out) from exc
        return Reply(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        await self._client.aclose()


def default_wire(base_url: str, secret: str) -> Wire:
    return AiohttpWire(base_url, secret)


def new_http_client(
    base_url: str, secret: str, transport: httpx.AsyncBaseTransport | None = None
) -> Wire:
    """The one wire the process shares (the lifespan owns and closes it): aiohttp to
    PortOne, or the given httpx transport (the sandbox's emulator)."""
    if transport is None:
        return default_wire(base_url, secret)
    return HttpxWire(base_url, secret, transport)


def payment_path(payment_id: str, *rest: str) -> str:
    # One path segment whatever the id holds: "/", "?", "#", and dot segments that a
    # URL normaliser would otherwise resolve ("..": the payments list).
    segment = quote(payment_id, safe="")
    if segment in {".", ".."}:
        segment = segment.replace(".", "%2E")
    return "/".join(("/payments", segment, *rest))


class _RetryableStatus(Exception):
    def __init__(self, response: Reply) -> None:
        super().__init__(f"PortOne answered {response.status_code}")
        self.response = response


Observer = Callable[[str, str, float], None]
"""Told of every call: operation, HTTP status (or "error"), seconds."""


class PortOneClient:
    def __init__(self, http: Wire, *, store_id: str, observe: Observer | None = None) -> None:
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

    async def _read(self, operation: str, method: str, path: str, **kwargs: Any) -> Reply:
        """A read is safe to repeat: retry network errors, 5xx and 429 with jittered backoff.

        The first attempt runs outside stamina: its retry context costs ~0.1 ms of CPU per
        call (tenacity's per-attempt machinery), which only a failed attempt needs.
        """
        started = time.monotonic()
        try:
            return _checked(await self._attempt(operation, method, path, **kwargs))
        except (NoAnswer, _RetryableStatus) as exc:
            failure = exc
        # The first attempt spent part of the budget, as it did inside stamina.
        budget = READ_BUDGET_SECONDS - (time.monotonic() - started)
        try:
            if budget <= 0:
                raise failure
            async for attempt in stamina.retry_context(
                on=(NoAnswer, _RetryableStatus),
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
        except NoAnswer as exc:
            raise _unreachable(exc) from exc
        return _checked(response)

    async def _attempt(self, operation: str, method: str, path: str, **kwargs: Any) -> Reply:
        response = await self._send(operation, method, path, **kwargs)
        if _is_retryable(response):
            raise _RetryableStatus(response)
        return response

    async def _write(self, operation: str, method: str, path: str, **kwargs: Any) -> Reply:
        """Writes are not retried here: their callers persist what is owed and retry later."""
        try:
            response = await self._send(operation, method, path, **kwargs)
        except NoAnswer as exc:
            raise _unreachable(exc) from exc
        if _is_retryable(response):
            raise _unavailable(response)
        return _checked(response)

    async def _send(self, operation: str, method: str, path: str, **kwargs: Any) -> Reply:
        started = time.perf_counter()
        status = "error"
        try:
            response = await self._http.request(method, path, **kwargs)
            status = str(response.status_code)
            return response
        finally:
            if self._observe is not None:
                self._observe(operation, status, time.perf_counter() - started)


def _unreachable(exc: NoAnswer) -> PortOneUnavailable:
    what = "timed out" if exc.timed_out else "unreachable"
    return PortOneUnavailable(f"PortOne {what} ({type(exc.__cause__).__name__})")


def _is_retryable(response: Reply) -> bool:
    return response.status_code == 429 or response.status_code >= 500


def _unavailable(response: Reply) -> PortOneUnavailable:
    retry_after = response.headers.get("Retry-After", "")
    return PortOneUnavailable(
        f"PortOne answered {response.status_code}",
        retry_after=int(retry_after) if retry_after.isdigit() else None,
    )


def _checked(response: Reply) -> Reply:
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


def _parse(response: Reply, model: type[Model]) -> Model:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise PortOneUnavailable(f"PortOne's answer is not a {model.__name__}") from exc
