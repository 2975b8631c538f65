"""Recording delivery outcomes: the notice's new state and its ``notification.*`` event together.

Outcomes are written in batches, one transaction for all that finished meanwhile, so the cost
of a commit is shared by many attempts. A notice given up also goes to notify's dead-letter
topic, where an operator finds it (``python -m services.notify.redeliver``). If an outcome cannot
be written (the database is away) it is retried; should the process die first, the notice's
lease runs out and it is attempted again under the same id, which receivers de-duplicate.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtime.outbox import OutboxRelay, Outgoing, stage
from schemas.envelope import Envelope, Event, utc_now
from schemas.events import NoticeChannel, NotificationDelivered, NotificationFailed
from schemas.topics import NOTIFICATIONS, dead_letters
from services.notify import metrics, store

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    import asyncpg

log = logging.getLogger(__name__)
SOURCE = "/egov/notify"
DEAD_LETTERS = dead_letters("notify")
BATCH = 500


@dataclass(frozen=True)
class Outcome:
    notice: asyncpg.Record
    error: str | None = None  # None: delivered
    next_attempt_at: datetime | None = None  # after a failure: when to try again; None: give up


def delivered_event(notice: asyncpg.Record, attempts: int) -> NotificationDelivered:
    return NotificationDelivered(
        notice_id=str(notice["notice_id"]),
        application_id=notice["application_id"],
        notice_type=notice["notice_type"],
        channel=NoticeChannel(notice["channel"]),
        attempts=attempts,
        delivered_at=utc_now(),
    )


def failed_event(outcome: Outcome, attempts: int) -> NotificationFailed:
    notice = outcome.notice
    return NotificationFailed(
        notice_id=str(notice["notice_id"]),
        application_id=notice["application_id"],
        notice_type=notice["notice_type"],
        channel=NoticeChannel(notice["channel"]),
        attempts=attempts,
        last_error=(outcome.error or "")[:500],
        will_retry=outcome.next_attempt_at is not None,
        next_attempt_at=outcome.next_attempt_at,
    )


def outgoing(event: Event, notice: asyncpg.Record) -> list[Outgoing]:
    """Keyed like the event that caused the notice; a notice given up is also parked."""
    key = notice["event_key"]
    envelope = Envelope.wrap(event, source=SOURCE, subject=key, causation_id=notice["cause_event_id"], actor="notify")
    given_up = isinstance(event, NotificationFailed) and not event.will_retry
    return [Outgoing(NOTIFICATIONS, key, envelope), *([Outgoing(DEAD_LETTERS, key, envelope)] if given_up else [])]


class Recorder:
    def __init__(self, pool: asyncpg.Pool, relay: OutboxRelay, on_recorded: Callable[[], None]) -> None:
        self._pool, self._relay, self._on_recorded = pool, relay, on_recorded
        self._pending: list[Outcome] = []
        self._ready = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def add(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        self._ready.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notice-outcomes")

    async def stop(self) -> None:
        """Write what is pending, then stop."""
        self._stopping = True
        self._ready.set()
        if self._task:
            await self._task

    async def _run(self) -> None:
        while self._pending or not self._stopping:
            await self._ready.wait()
            self._ready.clear()
            while self._pending:
                batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
                try:
                    await self._write(batch)
                except Exception:
                    log.warning("could not record delivery outcomes, will retry", exc_info=True)
                    self._pending[:0] = batch
                    if self._stopping:
                        return  # the leases run out; the notices are attempted again under their ids
                    await asyncio.sleep(1.0)
            self._on_recorded()

    async def _write(self, batch: list[Outcome]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(store.RELAXED)
            recorded = await self._record(conn, batch)
            await stage(conn, [out for event, o in recorded for out in outgoing(event, o.notice)])
        self._relay.wake()
        for event, o in recorded:
            self._count(event, o)

    @staticmethod
    async def _record(conn: asyncpg.Connection, batch: list[Outcome]) -> list[tuple[Event, Outcome]]:
        """The events of the outcomes recorded now (none for one another instance recorded first)."""
        delivered = [o for o in batch if o.error is None]
        failed = [o for o in batch if o.error is not None]
        done = await store.record_deliveries(conn, [o.notice["notice_id"] for o in delivered])
        tried = await store.record_failures(
            conn, [(o.notice["notice_id"], o.error or "", o.next_attempt_at) for o in failed]
        )
        events: list[tuple[Event, Outcome]] = []
        for o in delivered:
            if (attempts := done.get(o.notice["notice_id"])) is not None:
                events.append((delivered_event(o.notice, attempts), o))
        for o in failed:
            if (attempts := tried.get(o.notice["notice_id"])) is not None:
                events.append((failed_event(o, attempts), o))
        return events

    @staticmethod
    def _count(event: Event, outcome: Outcome) -> None:
        notice = outcome.notice
        if isinstance(event, NotificationDelivered):
            result = "delivered"
        else:
            result = "retry" if outcome.next_attempt_at else "failed"
            log.warning(
                "notice delivery failed",
                extra={
                    "notice_type": notice["notice_type"],
                    "channel": notice["channel"],
                    "error": outcome.error,
                    "gave_up": result == "failed",
                },
            )
        metrics.NOTICES.labels(notice["notice_type"], notice["channel"], result).inc()
