"""RFC 9457 problem details: the one renderer for every error the service answers with."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException

from app.db import database_unavailable
from app.errors import DatabaseUnavailable, ServiceError
from app.portone.errors import (
    PortOneApiError,
    PortOneCredentialsRejected,
    PortOneUnavailable,
)

logger = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = 5

HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


class Problem(BaseModel):
    """What every error response carries; some add fields (`reason`, `errors`, …)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    status: int
    title: str
    detail: str
    code: str


def problem_responses(*errors: type[ServiceError] | int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` declaring the problems a route can answer with."""
    statuses = {e if isinstance(e, int) else e.status for e in errors} | {422}
    return {
        status: {"model": Problem, "content": {MEDIA_TYPE: {}}, "description": "Problem"}
        for status in sorted(statuses)
    }


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {"type": "about:blank", "status": status, "title": title, "detail": detail}
    body |= {"code": code, **extra}
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def _retry_after(seconds: int | None = None) -> Mapping[str, str]:
    return {"Retry-After": str(seconds or RETRY_AFTER_SECONDS)}


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    headers = _retry_after() if exc.status == 503 else None
    headers = ({"WWW-Authenticate": "Bearer"} if exc.status == 401 else None) or headers
    return problem(exc.status, exc.code, exc.title, exc.detail, headers=headers, **exc.extra)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": ".".join(str(part) for part in error["loc"]), "message": error["msg"]}
        for error in exc.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return problem(422, "VALIDATION_FAILED", "Request is not valid", detail, errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:
        # FastAPI's own word for a body it cannot even decode (bytes that are not UTF-8).
        errors = [{"field": "body", "message": str(exc.detail)}]
        return problem(
            422, "VALIDATION_FAILED", "Request is not valid", str(exc.detail), errors=errors
        )
    code = HTTP_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
    title = code.replace("_", " ").capitalize()
    headers = exc.headers
    if exc.status_code == 405 and (allowed := _allowed_methods(request)):
        headers = {**(headers or {}), "Allow": allowed}
    return problem(exc.status_code, code, title, str(exc.detail), headers=headers)


def _allowed_methods(request: Request) -> str | None:
    """Every method the OpenAPI document has at the request's path (a route answers 405
    with its own methods only, when another route serves the same path)."""
    segments = request.url.path.split("/")
    for template, operations in request.app.openapi()["paths"].items():
        pattern = template.split("/")
        if len(pattern) == len(segments) and all(
            part == given or part.startswith("{")
            for part, given in zip(pattern, segments, strict=True)
        ):
            return ", ".join(method.upper() for method in operations)
    return None


async def _portone_unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PortOneUnavailable)
    return problem(
        503,
        "PORTONE_UNAVAILABLE",
        "PortOne unavailable",
        f"{exc}; retry later",
        headers=_retry_after(exc.retry_after),
    )


async def _portone_credentials(request: Request, exc: Exception) -> JSONResponse:
    logger.error("PortOne rejected our credentials: %s", exc)
    return problem(
        502,
        "PORTONE_REJECTED_CREDENTIALS",
        "PortOne rejected our credentials",
        "the service's PortOne configuration is wrong",
    )


async def _portone_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PortOneApiError)
    logger.error("PortOne refused a call: %s", exc)
    return problem(502, "PORTONE_ERROR", "PortOne refused the call", f"PortOne: {exc.type}")


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if not database_unavailable(exc):
        return await _unexpected(request, exc)
    logger.warning("database unavailable: %s", type(exc).__name__)
    error = DatabaseUnavailable("the database did not answer; retry later")
    return await _service_error(request, error)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error", exc_info=exc)
    return problem(500, "INTERNAL_ERROR", "Internal error", "the service failed; retry later")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(PortOneUnavailable, _portone_unavailable)
    app.add_exception_handler(PortOneCredentialsRejected, _portone_credentials)
    app.add_exception_handler(PortOneApiError, _portone_api_error)
    # SQLAlchemy's errors, and asyncpg's own from the payment path's driver connection.
    database_errors = (sa_exc.DBAPIError, sa_exc.TimeoutError, OSError)
    asyncpg_errors = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
    for db_error in (*database_errors, *asyncpg_errors):
        app.add_exception_handler(db_error, _database_error)
    app.add_exception_handler(Exception, _unexpected)
