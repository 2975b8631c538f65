"""The transactional outbox: stage events with the state change, publish them after commit.

Handlers return ``Outgoing`` events; the consumer stages them in the same
transaction as the inbox row and the state change. The relay publishes staged
rows in order with the idempotent producer and deletes them once acknowledged.
A crash between publish and delete republishes the same event id, which every
consumer's inbox ignores.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from runtime.crashpoints import crash_point
from runtime.kafka import event_headers
from runtime.locks import AdvisoryLock
from runtime.metrics import EVENTS_PRODUCED, OUTBOX_PENDING
from runtime.tracing import current_traceparent

if TYPE_CHECKING:
    from collections.abc import Sequence

    import asyncpg
    from aiokafka import AIOKafkaProducer

    from schemas.envelope import Envelope
    from schemas.topics import Topic

log = logging.getLogger(__name__)
# Every in-process path that stages rows wakes its relay (consumer commits, commands, the budget line,
# notify's outcomes), so the poll only catches rows another process staged: an instance whose relay
# lost the lock race, or one that died before publishing. Polling faster costs an idle stack a
# transaction per service four times a second.
IDLE_POLL_SECONDS = 2.0
# Another instance holds the relay lock: it may have read the outbox before our rows committed.
BUSY_RETRY_SECONDS = 0.05


@dataclass(frozen=True)
class Outgoing:
    topic: Topic
    key: str
    envelope: Envelope
    # The W3C trace context of the span that caused it; filled in by ``traced`` or ``stage``.
    traceparent: str | None = None


def traced(events: Sequence[Outgoing]) -> list[Outgoing]:
    """The events with the current span's trace context, unless they carry one already. Called while
    the span that made them is current: the batch's events are staged together after their spans end."""
    traceparent = current_traceparent()
    return [e if e.traceparent or traceparent is None else replace(e, traceparent=traceparent) for e in events]


async def stage(conn: asyncpg.Connection, events: Sequence[Outgoing]) -> None:
    if not events:
        return
    events = await _caused_traces(conn, traced(events))
    await conn.executemany(
        "INSERT INTO outbox (topic, key, event_type, event_id, value, traceparent) VALUES ($1, $2, $3, $4, $5, $6)",
        [(e.topic.name, e.key, e.envelope.type, e.envelope.id, e.envelope.to_bytes(), e.traceparent) for e in events],
    )


async def remember_traces(conn: asyncpg.Connection, traces: Sequence[tuple[str, str]]) -> None:
    """(event id, traceparent) of handled events, for what is staged later on their account."""
    if traces:
        await conn.execute(
            "INSERT INTO event_traces (event_id, traceparent) SELECT * FROM unnest($1::text[], $2::text[])"
            " ON CONFLICT DO NOTHING",
            [event_id for event_id, _ in traces],
            [traceparent for _, traceparent in traces],
        )


async def _caused_traces(conn: asyncpg.Connection, events: list[Outgoing]) -> list[Outgoing]:
    """Events staged outside any span (a loop deciding later) continue the trace of their cause."""
    causes = {e.envelope.causationid for e in events if e.traceparent is None and e.envelope.causationid}
    if not causes:
        return events
    rows = await conn.fetch("SELECT event_id, traceparent FROM event_traces WHERE event_id = ANY($1::text[])", causes)
    known = {r["event_id"]: r["traceparent"] for r in rows}
    return [
        replace(e, traceparent=known.get(e.envelope.causationid or "")) if e.traceparent is None else e for e in events
    ]


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, *, batch_size: int = 500) -> None:
        self._pool = pool
        self._producer = producer
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        """Publish what is staged, then stop."""
        self._stopping = True
        self._wake.set()
        if self._task:
            await self._task

    async def _run(self) -> None:
        while True:
            try:
                published = await self._publish_batch()
                while published == self._batch_size:
                    published = await self._publish_batch()
            except Exception:  # the broker or database is down: retry, never lose a row
                log.warning("outbox relay failed, will retry", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), timeout=BUSY_RETRY_SECONDS if published is None else IDLE_POLL_SECONDS
                )
            self._wake.clear()

    async def publish_pending(self) -> int:
        """Publish one batch of staged rows; how many (0 also when another instance is publishing)."""
        return await self._publish_batch() or 0

    async def _publish_batch(self) -> int | None:
        """None: another instance holds the relay lock."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", AdvisoryLock.OUTBOX_RELAY):
                return None
            rows = await conn.fetch(
                "SELECT id, topic, key, event_type, event_id, value, traceparent FROM outbox ORDER BY id LIMIT $1",
                self._batch_size,
            )
            if not rows:
                OUTBOX_PENDING.set(0)
                return 0
            deliveries = [
                await self._producer.send(
                    r["topic"],
                    bytes(r["value"]),
                    key=r["key"].encode(),
                    headers=event_headers(r["event_type"], r["event_id"], r["traceparent"]),
                )
                for r in rows
            ]
            await asyncio.gather(*deliveries)
            crash_point("outbox.after_publish")
            await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
            for r in rows:
                EVENTS_PRODUCED.labels(r["topic"], r["event_type"]).inc()
            OUTBOX_PENDING.set(await conn.fetchval("SELECT count(*) FROM outbox"))
            return len(rows)
