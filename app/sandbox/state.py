"""What the sandbox keeps for the life of the process."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from fastapi import Request

from app.sandbox.emulator import Emulator
from app.sandbox.payments import EmulatedPayment
from app.sandbox.store import SandboxStore


class Notifier(Protocol):
    """Sends PortOne's webhook of one kind for a payment (`WebhookSender`, or a stand-in's)."""

    def notify(self, kind: str, payment: EmulatedPayment) -> None: ...


@dataclass
class Sandbox:
    emulator: Emulator
    sender: Notifier | None  # None: no webhooks (an emulator for the tests alone)
    api_secret: str
    store: SandboxStore | None = None  # None: kept in memory only

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
