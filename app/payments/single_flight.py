"""One PortOne read of a payment, however many browsers ask for it at once.

The public doors (`/payments/complete`, `/payments/return`) can be called by anyone who
knows a paymentId, as often as they like. Calls for one payment that arrive while a read
of it is in flight share that read (and its outcome); an outcome that leaves the order
without money (waiting, or closed) is reused for up to `REUSE_SECONDS` after its read
began. A paid or rejected outcome is never reused: the order answers those itself.

Webhooks and the reconciler always read afresh (something changed), never join a read
that began before them, and what they read replaces what the public doors reuse.

Per process, in memory: a read shared across replicas would need a round trip to share,
which costs what it saves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from app.portone.errors import PaymentNotFound

REUSE_SECONDS = 1.0
SWEEP_ABOVE = 1024  # remembered outcomes, before the expired ones are first dropped


T = TypeVar("T")


@dataclass(frozen=True)
class _Remembered(Generic[T]):
    """A read's result, or the not-yet-paid error it ended with, and when it began. With
    neither, the read found the order no longer waiting: nothing to reuse, but an older
    read that lands later must not be reused in its place."""

    began: float
    result: T | None
    error: PaymentNotFound | None

    @property
    def reusable(self) -> bool:
        return self.result is not None or self.error is not None

    def replay(self) -> T:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class SingleFlight(Generic[T]):
    """Single flight per key, with a short memory for outcomes still waiting for money.

    `waiting(result)` says whether a result leaves the payment not yet paid.
    """

    def __init__(
        self,
        waiting: Callable[[T], bool],
        *,
        reuse_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._waiting = waiting
        self._reuse_seconds = reuse_seconds
        self._clock = clock
        self._flights: dict[str, tuple[float, asyncio.Future[T]]] = {}
        self._recent: dict[str, _Remembered[T]] = {}
        self._sweep_above = SWEEP_ABOVE

    @property
    def _reuse(self) -> float:
        return REUSE_SECONDS if self._reuse_seconds is None else self._reuse_seconds

    async def shared(
        self,
        key: str,
        read: Callable[[], Awaitable[T]],
        *,
        answers: Callable[[T], bool] | None = None,
    ) -> T:
        """The outcome of a read of `key`: reused, joined, or this caller's own. An outcome
        of another caller's read that does not `answer` this caller is not taken: the caller
        reads afresh."""
        now = self._clock()
        recent = self._recent.get(key)
        if recent is not None and recent.reusable and now - recent.began < self._reuse:
            if answers is None or recent.result is None or answers(recent.result):
                return recent.replay()
            return await self.fresh(key, read)
        flight = self._flights.get(key)
        joined = flight is not None and now - flight[0] < self._reuse
        if flight is None or not joined:
            flight = (now, asyncio.ensure_future(read()))
            self._flights[key] = flight
            flight[1].add_done_callback(lambda done: self._landed(key, flight, done))
        # Shielded: a caller that goes away does not cancel the read the others wait on.
        result = await asyncio.shield(flight[1])
        if joined and answers is not None and not answers(result):
            return await self.fresh(key, read)
        return result

    async def fresh(self, key: str, read: Callable[[], Awaitable[T]]) -> T:
        """A read of its own (a webhook's, the reconciler's), which the public doors then
        reuse in place of an older one."""
        began = self._clock()
        try:
            result = await read()
        except PaymentNotFound as error:
            self._remember(key, _Remembered(began, None, error))
            raise
        self._remember(key, _Remembered(began, result, None))
        return result

    def _landed(
        self, key: str, flight: tuple[float, asyncio.Future[T]], done: asyncio.Future[T]
    ) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if done.cancelled():
            return
        error = done.exception()
        if error is None:
            self._remember(key, _Remembered(flight[0], done.result(), None))
        elif isinstance(error, PaymentNotFound):
            self._remember(key, _Remembered(flight[0], None, error))

    def _remember(self, key: str, outcome: _Remembered[T]) -> None:
        current = self._recent.get(key)
        if current is not None and current.began > outcome.began:
            return  # a newer read has landed already
        if outcome.error is None and not self._waiting(outcome.replay()):
            outcome = _Remembered(outcome.began, None, None)  # the order answers itself
        self._recent[key] = outcome
        if len(self._recent) > self._sweep_above:
            now = self._clock()
            for stale in [k for k, r in self._recent.items() if now - r.began >= self._reuse]:
                del self._recent[stale]
            # Twice what is still fresh: above SWEEP_ABOVE outcomes a second, a fixed bound
            # would sweep on every read.
            self._sweep_above = max(SWEEP_ABOVE, 2 * len(self._recent))
