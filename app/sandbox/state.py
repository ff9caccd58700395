"""What the sandbox keeps for the life of the process."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from app.sandbox.delivery import WebhookSender
from app.sandbox.emulator import Emulator


@dataclass
class Sandbox:
    emulator: Emulator
    sender: WebhookSender
    api_secret: str


def sandbox_of(request: Request) -> Sandbox:
    sandbox: Sandbox = request.app.state.sandbox
    return sandbox
