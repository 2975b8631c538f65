"""Applies the mutant named in EGOV_FAULTS_MUTANT to this service process (see __init__.py)."""

from __future__ import annotations

import os
from typing import Any

MUTANT = os.environ.get("EGOV_FAULTS_MUTANT", "")
INBOX_INSERT = "INTO processed_events"
CLAIM_AGAIN = "ON CONFLICT (consumer, event_id) DO UPDATE SET consumer = excluded.consumer"


def forget_the_inbox() -> None:
    """The inbox insert claims every event as new, as if the row were never there."""
    import asyncpg.connection

    def mutated(method: Any) -> Any:
        async def call(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            if INBOX_INSERT in query:
                query = query.replace("ON CONFLICT DO NOTHING", CLAIM_AGAIN)
            return await method(self, query, *args, **kwargs)

        return call

    connection = asyncpg.connection.Connection
    connection.fetch = mutated(connection.fetch)
    connection.fetchval = mutated(connection.fetchval)


def commit_offsets_first() -> None:
    """Offsets committed as soon as a batch is fetched, before its transaction: a crash in between
    (the crash point after the commit is moved before it) loses the batch."""
    from runtime import consumer
    from runtime.crashpoints import crash_point

    original = consumer.TransactionalConsumer._process_batch

    async def process_batch(self: Any, records: list[Any]) -> None:
        await self._consumer.commit()
        crash_point("consumer.after_commit")
        await original(self, records)

    consumer.TransactionalConsumer._process_batch = process_batch  # type: ignore[method-assign]


if MUTANT == "skip_inbox":
    forget_the_inbox()
elif MUTANT == "offsets_first":
    commit_offsets_first()
