"""What the sandbox keeps for the life of the process."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import Request

from app.sandbox.emulator import Emulator
from app.sandbox.payments import EmulatedPayment
from app.sandbox.store import SandboxStore
from app.times import rfc3339, utc_now

CALLS_KEPT = 50


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

    def called(self, payment_id: str, method: str, path: str, status: int) -> None:
        self.calls[payment_id].append(
            {"at": rfc3339(utc_now()), "method": method, "path": path, "status": status}
        )

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
