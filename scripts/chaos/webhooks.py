"""PortOne's webhooks as the stress stand-in sends them: late, out of order, twice."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections import Counter

import httpx

from app import standard_webhooks

ATTEMPTS = 5


class Deliveries:
    """Each body signed once under one webhook-id, after a random delay, to one service
    process or both, sometimes again later; retried with backoff until answered 2xx."""

    def __init__(self, rng: random.Random, key: bytes, targets: list[str]) -> None:
        self.rng = rng
        self.key = key
        self.targets = targets
        self.counts: Counter[str] = Counter()
        self.outstanding = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=3.0))

    def send(self, body: bytes) -> None:
        self.outstanding += 1
        task = asyncio.create_task(self._deliver(body))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.http.aclose()

    async def _deliver(self, body: bytes) -> None:
        webhook_id = "msg_" + secrets.token_hex(12)
        try:
            await asyncio.sleep(self.rng.uniform(0.0, 1.5))
            targets = [self.rng.choice(self.targets)]
            if self.rng.random() < 0.35:
                targets = list(self.targets)
                self.counts["sent to both processes"] += 1
            await asyncio.gather(*(self._send(target, webhook_id, body) for target in targets))
            if self.rng.random() < 0.15:
                self.counts["sent again later"] += 1
                await asyncio.sleep(self.rng.uniform(0.2, 3.0))
                await self._send(self.rng.choice(self.targets), webhook_id, body)
        finally:
            self.outstanding -= 1

    async def _send(self, target: str, webhook_id: str, body: bytes) -> None:
        for attempt in range(ATTEMPTS):
            headers = standard_webhooks.headers(self.key, webhook_id, body)
            try:
                response = await self.http.post(
                    f"{target}/webhooks/portone", content=body, headers=headers
                )
                self.counts[f"answered {response.status_code}"] += 1
                if response.is_success:
                    return
            except httpx.HTTPError as exc:
                self.counts[f"failed {type(exc).__name__}"] += 1
            await asyncio.sleep(0.5 * 2**attempt)
        self.counts["abandoned"] += 1
