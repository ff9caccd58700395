"""One JSON object per line on stdout, with the request's ids bound to every line.

The stdlib logger with a small formatter, rather than structlog: every library here
already logs through the stdlib, and a formatter plus a context variable is all the
binding needs.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import stamina.instrumentation

_context: ContextVar[dict[str, str]] = ContextVar("log_context", default={})  # noqa: B039

# Standard record attributes, and uvicorn's ANSI-coloured copy of its message.
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


def bind(**values: str | None) -> None:
    """Add ids (request_id, order_id, payment_id, …) to every later line of this task."""
    _context.set(_context.get() | {k: v for k, v in values.items() if v is not None})


@contextmanager
def bound(**values: str | None) -> Iterator[None]:
    token = _context.set(_context.get() | {k: v for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        _context.reset(token)


class BindContext(logging.Filter):
    """Copies the bound ids onto each record when it is emitted, in the emitting task."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            record.__dict__.setdefault(key, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line |= {k: v for k, v in record.__dict__.items() if k not in _RESERVED}
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(BindContext())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))
    # stamina logs its retries through structlog when that happens to be installed.
    stamina.instrumentation.set_on_retry_hooks([stamina.instrumentation.LoggingOnRetryHook])
    # uvicorn installs its own handlers; route its lines through ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
