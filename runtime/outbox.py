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
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtime.crashpoints import crash_point
from runtime.locks import AdvisoryLock
from runtime.metrics import EVENTS_PRODUCED, OUTBOX_PENDING

if TYPE_CHECKING:
    from collections.abc import Sequence

    import asyncpg
    from aiokafka import AIOKafkaProducer

    from schemas.envelope import Envelope
    from schemas.topics import Topic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    topic: Topic
    key: str
    envelope: Envelope


async def stage(conn: asyncpg.Connection, events: Sequence[Outgoing]) -> None:
    if not events:
        return
    await conn.executemany(
        "INSERT INTO outbox (topic, key, event_type, event_id, value) VALUES ($1, $2, $3, $4, $5)",
        [(e.topic.name, e.key, e.envelope.type, e.envelope.id, e.envelope.to_bytes()) for e in events],
    )


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
                while await self.publish_pending() == self._batch_size:
                    pass
            except Exception:  # the broker or database is down: retry, never lose a row
                log.warning("outbox relay failed, will retry", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=0.25)
            self._wake.clear()

    async def publish_pending(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", AdvisoryLock.OUTBOX_RELAY):
                return 0
            rows = await conn.fetch(
                "SELECT id, topic, key, event_type, event_id, value FROM outbox ORDER BY id LIMIT $1",
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
                    headers=[("ce_type", r["event_type"].encode()), ("ce_id", r["event_id"].encode())],
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
