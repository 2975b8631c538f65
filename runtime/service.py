"""Service lifecycle: start components in order, stop them in reverse on SIGTERM, exit 0."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

log = logging.getLogger(__name__)


@dataclass
class Component:
    name: str
    start: Callable[[], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]


@dataclass
class Lifecycle:
    components: list[Component] = field(default_factory=list)
    started: list[Component] = field(default_factory=list)

    def add(self, name: str, start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]) -> None:
        self.components.append(Component(name, start, stop))

    async def start(self) -> None:
        for component in self.components:
            await component.start()
            self.started.append(component)
            log.info("component started", extra={"component": component.name})

    async def stop(self) -> None:
        while self.started:
            component = self.started.pop()
            try:
                await component.stop()
            except Exception:
                log.exception("component failed to stop cleanly", extra={"component": component.name})


async def run_until_signalled(lifecycle: Lifecycle, grace_seconds: float) -> None:
    """Run until SIGTERM or SIGINT, then stop within the grace period."""
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    try:
        await lifecycle.start()
        log.info("service started")
        await stop_requested.wait()
        log.info("stop requested, finishing in-flight work")
    finally:
        await asyncio.wait_for(lifecycle.stop(), timeout=grace_seconds)
        log.info("service stopped")


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Entry point helper: uvloop when installed (it is, via uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency
        asyncio.run(main())
    else:
        uvloop.run(main())
