"""The shop's end of the order events (ORDER_EVENTS_URL), as the stress run plays it."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from aiohttp import web
from standardwebhooks import Webhook


class EventReceiver:
    """ORDER_EVENTS_URL: verifies Standard Webhooks signatures, fails some first attempts."""

    def __init__(self, secret: str, seed: int) -> None:
        self.webhook = Webhook(secret)
        self.rng = random.Random(seed)  # noqa: S311
        self.faults_on = True
        self.failed_once: set[str] = set()
        self.accepted: list[tuple[str, str, str, str]] = []  # (id, orderId, type, status)
        self.bad_signatures = 0
        self.answered: Counter[str] = Counter()
        self.runner: web.AppRunner | None = None

    async def start(self, port: int) -> None:
        app = web.Application()
        app.add_routes([web.post("/order-events", self.receive)])
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            payload = self.webhook.verify(body, dict(request.headers))
        except Exception:
            self.bad_signatures += 1
            return web.Response(status=400)
        event_id = request.headers["webhook-id"]
        if self.faults_on and event_id not in self.failed_once:
            roll = self.rng.random()
            if roll < 0.10:
                self.failed_once.add(event_id)
                self.answered["500"] += 1
                return web.Response(status=500)
            if roll < 0.15:
                await asyncio.sleep(self.rng.uniform(0.2, 1.0))
        data = payload.get("data") or {}
        self.accepted.append(
            (event_id, str(data.get("orderId")), str(payload.get("type")), str(data.get("status")))
        )
        self.answered["204"] += 1
        return web.Response(status=204)
