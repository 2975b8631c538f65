"""Service lifecycle: start components in order, stop them in reverse on SIGTERM, exit 0."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Sequence

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


def service_cli(service: str, argv: Sequence[str] | None = None) -> None:
    """``python -m services.<service>`` takes no arguments; ``--help`` says how it is configured and
    exits 0 before any setting is read or anything is connected to."""
    argparse.ArgumentParser(
        prog=f"python -m services.{service}",
        description=f"Run the {service} service until SIGTERM or SIGINT. It is configured by environment "
        f"variables prefixed {service.upper()}_, validated at start; see README.md.",
        epilog="Exit codes: 0 stopped by SIGTERM or SIGINT, 1 could not start or failed (settings refused, "
        "database or broker unreachable), 2 usage.",
    ).parse_args(sys.argv[1:] if argv is None else argv)


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Entry point helper: uvloop when installed (it is, via uvicorn[standard])."""
    service_cli(main.__module__.split(".")[1])  # services.<name>.app
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency
        asyncio.run(main())
    else:
        uvloop.run(main())
