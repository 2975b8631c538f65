"""Group commit: requests that arrive while a statement is in flight share the next one.

A lone request goes to the database at once (no added latency); under load, every request that
arrived during one round trip goes in the next, so the round trips per request fall as the load
rises. Each caller still waits for its own result, and hears of a failure of its statement.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

T = TypeVar("T")
R = TypeVar("R")


class Grouped(Generic[T, R]):
    """``await grouped(item)`` runs ``call(items)`` for a group of items; ``call`` answers one result per item."""

    def __init__(self, call: Callable[[Sequence[T]], Awaitable[Sequence[R]]], *, max_group: int = 256) -> None:
        self._call = call
        self._max_group = max_group
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._running = False
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, answer))
        if not self._running:
            self._running = True
            self._task = loop.create_task(self._drain())
        return await answer

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting[: self._max_group], self._waiting[self._max_group :]
                try:
                    results = await self._call([item for item, _ in group])
                except BaseException as err:
                    for _, answer in group:
                        if not answer.done():
                            answer.set_exception(err)
                    if not isinstance(err, Exception):
                        raise
                    continue
                for (_, answer), result in zip(group, results, strict=True):
                    if not answer.done():  # a caller that went away (client disconnected) needs no answer
                        answer.set_result(result)
        finally:
            self._running = False
