"""Instants: always UTC, written as RFC 3339."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator


def as_utc(at: datetime) -> datetime:
    """An instant in UTC (naive means UTC); ValueError when UTC cannot hold it."""
    try:
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range") from None


def rfc3339(at: datetime) -> str:
    """`2026-11-27T00:00:00.000Z`: UTC, milliseconds, as PortOne writes times."""
    return as_utc(at).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now() -> datetime:
    return datetime.now(UTC)


def backoff(attempts: int, first: timedelta, longest: timedelta) -> timedelta:
    """How long to wait after `attempts` failed tries: `first`, doubling up to `longest`,
    ±20 % so that retries that failed together do not return together."""
    wait: timedelta = min(first * 2 ** max(attempts - 1, 0), longest)
    return wait * random.uniform(0.8, 1.2)  # noqa: S311 (jitter, not secrecy)


RFC3339 = re.compile(r"\A\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z")


def _rfc3339_text(value: object) -> object:
    """Only an RFC 3339 time with its offset, not the other forms pydantic would take."""
    if not isinstance(value, str) or not RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-11-27T00:00:00Z")
    return value


Instant = Annotated[datetime, AfterValidator(as_utc)]
"""A time in UTC, from any form pydantic reads (PortOne's payloads)."""

UtcDatetime = Annotated[datetime, BeforeValidator(_rfc3339_text), AfterValidator(as_utc)]
"""A time a caller of this service sends: RFC 3339 with an offset, held in UTC."""
