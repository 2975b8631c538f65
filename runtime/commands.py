"""An HTTP command's one transaction: its state change and the events it caused staged together.

Caseworker decisions and budget administration are commands, not consumed events, but they keep the same
promise as a consumer: the change and its outgoing events commit together (the outbox), metrics count
only what committed, and the relay is woken to publish at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import asyncpg

from runtime.metrics import Committed, nothing_counted
from runtime.outbox import OutboxRelay, Outgoing, stage

T = TypeVar("T")
Command = Callable[[asyncpg.Connection], Awaitable[tuple[T, Sequence[Outgoing]]]]


class CommandRunner:
    def __init__(self, pool: asyncpg.Pool, relay: OutboxRelay, committed: Committed = nothing_counted) -> None:
        self._pool, self._relay, self._committed = pool, relay, committed

    async def run(self, command: Command[T]) -> T:
        """Run ``command`` in a transaction and stage its events; a ``Refused`` rolls everything back."""
        async with self._pool.acquire() as conn, conn.transaction():
            result, outgoing = await command(conn)
            await stage(conn, outgoing)
        self._committed(outgoing)
        self._relay.wake()
        return result
