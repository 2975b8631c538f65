"""The fault run's portal callback endpoint: keeps every call, and misbehaves as a real one does.

A seeded share of the calls is answered 503 at once, and a smaller one only after notify has given
up waiting (the call landed, notify does not know it: the same notice comes again, and must come
with the same content). What the checks ask of it: every notice notify counts as delivered was
accepted here at least once, and no notice id came twice with different bodies.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from dataclasses import dataclass, field

from aiohttp import web

CALLBACK_TIMEOUT_SECONDS = 2.0  # notify's per-attempt limit in fault runs (NOTIFY_CALLBACK_TIMEOUT_SECONDS)


@dataclass
class CallbackReceiver:
    port: int
    failure_share: float
    seed: int
    bodies: dict[str, set[bytes]] = field(default_factory=lambda: defaultdict(set))
    accepted: set[str] = field(default_factory=set)  # notice ids answered 2xx at least once
    calls: int = 0
    _rng: random.Random = field(init=False)
    _runner: web.AppRunner | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        notice_id = request.headers.get("webhook-id", "")
        self.calls += 1
        self.bodies[notice_id].add(body)
        draw = self._rng.random()
        if draw < self.failure_share:
            return web.Response(status=503)
        if draw < self.failure_share * 1.5:  # answered, but after notify stopped listening
            await asyncio.sleep(CALLBACK_TIMEOUT_SECONDS + 0.5)
        self.accepted.add(notice_id)
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
            self._runner = None
