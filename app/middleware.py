"""ASGI middleware: request ids, one log line and metrics per request, CORS where public."""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import logs, metrics

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
                metrics.http_requests.labels(route, scope["method"], str(status)).inc()
                metrics.http_duration.labels(route, scope["method"]).observe(elapsed)
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
