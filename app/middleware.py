"""ASGI middleware: request ids, one log line and metrics per request, CORS where public,
the internal token, and a bound on request bodies. The last two refuse before a body is
read: a stranger's request costs its headers, no more."""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import time
from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import logs, metrics
from app.errors import PayloadTooLarge, ServiceError, Unauthorized
from app.problems import problem

logger = logging.getLogger("app.http")

_REQUEST_ID = re.compile(r"\A[\x21-\x7e]{1,128}\Z")
PUBLIC_PATHS = frozenset({"/payments/complete"})


class RequestContext:
    """Takes X-Request-ID (or makes one), echoes it, binds it to every log line, and counts
    the request by its route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        presented = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = presented if _REQUEST_ID.match(presented) else secrets.token_hex(8)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        with logs.bound(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                route = getattr(scope.get("route"), "path", "unmatched")
                metrics.observe_request(route, scope["method"], status, elapsed)
                if logger.isEnabledFor(logging.INFO):
                    logger.info(
                        "%s %s %s",
                        scope["method"],
                        route,
                        status,
                        extra={"status": status, "duration_ms": round(elapsed * 1000, 2)},
                    )


class PublicCors:
    """CORS for the endpoints a shop's browser calls; internal ones never answer preflights."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app, allow_origins=list(origins), allow_methods=["POST"], allow_headers=["Content-Type"]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        public = scope["type"] == "http" and scope["path"] in PUBLIC_PATHS
        await (self.cors if public else self.app)(scope, receive, send)


class InternalToken:
    """Refuses (401 UNAUTHORIZED) a request under an internal route's first path segment
    (`/orders`, `/order-events`) without `Authorization: Bearer <INTERNAL_API_TOKEN>`."""

    def __init__(self, app: ASGIApp, token: str, segments: frozenset[str]) -> None:
        self.app = app
        self.expected = token.encode()
        self.segments = segments

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].split("/", 2)[1] in self.segments:
            scheme, _, presented = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(presented, self.expected):
                unauthorized = Unauthorized("send Authorization: Bearer <INTERNAL_API_TOKEN>")
                await _refusal(unauthorized, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
                return
        await self.app(scope, receive, send)


# The most a request body may hold, by path: the public doors take a few hundred bytes.
BODY_LIMITS = {"/payments/complete": 16 * 1024, "/webhooks/portone": 64 * 1024}
DEFAULT_BODY_LIMIT = 1024 * 1024


class BodyLimit:
    """Refuses (413 PAYLOAD_TOO_LARGE) a body larger than its path allows, before it is
    read whole: by its Content-Length, or, sent in chunks, once it passes the limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = BODY_LIMITS.get(scope["path"], DEFAULT_BODY_LIMIT)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > limit:
                await _too_large(limit)(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        body, more = [], True  # chunked: read up to the limit, then hand it on
        size = 0
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body.append(message.get("body", b""))
            size += len(body[-1])
            more = message.get("more_body", False)
            if size > limit:
                await _too_large(limit)(scope, receive, send)
                return
        await self.app(scope, _replay(b"".join(body), receive), send)


def _too_large(limit: int) -> ASGIApp:
    return _refusal(PayloadTooLarge(f"the body may hold {limit} bytes at most"))


def _refusal(error: ServiceError, headers: dict[str, str] | None = None) -> ASGIApp:
    return problem(error.status, error.code, error.title, error.detail, headers=headers)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
