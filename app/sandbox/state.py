"""What the sandbox keeps for the life of the process."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from fastapi import Request

from app.portone.client import IDEMPOTENCY_WINDOW
from app.sandbox.emulator import Emulator
from app.sandbox.payments import EmulatedPayment
from app.sandbox.store import SandboxStore
from app.times import rfc3339, utc_now

CALLS_KEPT = 50


@dataclass
class Answer:
    """The first answer to an Idempotency-Key: its path, when, and (once given) what."""

    path: str
    at: datetime
    status: int | None = None  # None while the first request runs
    body: bytes = b""


class Notifier(Protocol):
    """Sends PortOne's webhook of one kind for a payment (`WebhookSender`, or a stand-in's)."""

    def notify(self, kind: str, payment: EmulatedPayment) -> None: ...


@dataclass
class Sandbox:
    emulator: Emulator
    sender: Notifier | None  # None: no webhooks (an emulator for the tests alone)
    api_secret: str
    store: SandboxStore | None = None  # None: kept in memory only
    # The calls PortOne received, by payment (the demo shows what the service asked).
    calls: defaultdict[str, deque[dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(lambda: deque(maxlen=CALLS_KEPT))
    )
    answers: dict[str, Answer] = field(default_factory=dict)

    def answer(self, key: str) -> Answer | None:
        """The first answer to `key`, while PortOne would still replay it."""
        now = utc_now()
        for stale in [k for k, a in self.answers.items() if now - a.at > IDEMPOTENCY_WINDOW]:
            del self.answers[stale]
        return self.answers.get(key)

    def called(
        self, payment_id: str, method: str, path: str, status: int, refusal: str | None = None
    ) -> None:
        """Note a call PortOne answered, with the `type` of its refusal, if it refused."""
        call = {"at": rfc3339(utc_now()), "method": method, "path": path, "status": status}
        if refusal is not None:
            call["refusal"] = refusal
        self.calls[payment_id].append(call)

    async def changed(self, payment: EmulatedPayment, webhooks: Sequence[str] = ()) -> None:
        """Keep the payment as it now is, then send the webhooks its change causes."""
        await self.kept(payment.id)
        if self.sender is not None:
            for kind in webhooks:
                self.sender.notify(kind, payment)

    async def kept(self, payment_id: str) -> None:
        if self.store is not None:
            await self.store.keep(self.emulator, payment_id)


def sandbox_of(request: Request) -> Sandbox:
    sandbox: Sandbox = request.app.state.sandbox
    return sandbox
