"""The line server: decides places the arrival frontier has passed, and issues due grant notices.

Receipts only take their place in the consumer's transaction; this loop decides for them (earmark,
reservation or waitlist position) once every partition has been read past their place (see
``arrivals.py``), so an application received earlier but delivered a little later on another
partition still gets its place. It also refreshes the budget gauges; ``committed`` counts what a
round decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from runtime.metrics import Committed, nothing_counted
from runtime.outbox import OutboxRelay, stage
from schemas.envelope import utc_now
from services.budget import arrivals, metrics, store
from services.budget.line import LineSettings, commit_due, serve_line

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)
GAUGE_INTERVAL_SECONDS = 1.0
# With nothing untold and nothing reserved the line has nothing to decide until an event arrives (the
# consumer wakes it); the bound catches what another instance's consumer put in line.
IDLE_WAIT_SECONDS = 2.0


class LineServer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        relay: OutboxRelay,
        line: LineSettings,
        interval: float,
        committed: Committed = nothing_counted,
    ) -> None:
        self._pool, self._relay, self._line, self._interval = pool, relay, line, interval
        self._committed = committed
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._gauges_at = 0.0
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Something reached the line (an arrival, a review, a withdrawal): look at it now."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="line-server")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task:
            await self._task

    async def _run(self) -> None:
        while not self._stopping:
            wait = self._interval
            try:
                if await self.tick():
                    self._relay.wake()
                elif await store.line_is_settled(self._pool):
                    wait = IDLE_WAIT_SECONDS
                if time.monotonic() - self._gauges_at > GAUGE_INTERVAL_SECONDS:
                    await self.refresh_gauges()
            except Exception:
                log.warning("line server round failed, will retry", exc_info=True)
            if wait == self._interval:  # busy: the steady pace, not one round per consumer commit
                await asyncio.sleep(wait)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            self._wake.clear()

    async def tick(self) -> bool:
        """One round; True if it staged events."""
        line = self._line
        frontier = await arrivals.frontier(self._pool, line.partitions)
        if not (
            await store.has_untold_arrivals(self._pool, frontier)
            or await store.has_due_commits(self._pool, line.commit_after_seconds, frontier)
        ):
            return False
        async with self._pool.acquire() as conn, conn.transaction():
            await store.lock_line(conn)
            out = await serve_line(conn, line, None)
            if not line.commits_at_once:
                out.extend(await commit_due(conn, line))
            await stage(conn, out)
        self._committed(out)
        return bool(out)

    async def refresh_gauges(self) -> None:
        self._gauges_at = time.monotonic()
        for pot in await store.pots_view(self._pool):
            year = str(pot["fiscal_year"])
            metrics.POT.labels(year).set(pot["pot_cents"])
            metrics.AVAILABLE.labels(year).set(pot["available_cents"])
            metrics.EARMARKED.labels(year).set(pot["earmarked_cents"])
            metrics.RESERVED.labels(year).set(pot["reserved_cents"])
            metrics.COMMITTED.labels(year).set(pot["committed_cents"])
        length, oldest = await self._pool.fetchrow(
            "SELECT count(*), coalesce(extract(epoch FROM now() - min(place_at)), 0) FROM line"
            " WHERE status = 'waiting' AND told_position IS NOT NULL"
        )
        metrics.WAITLIST_LENGTH.set(length)
        metrics.WAITLIST_OLDEST_AGE.set(float(oldest))
        frontier = await arrivals.frontier(self._pool, self._line.partitions)
        if frontier is not None:
            metrics.FRONTIER_LAG.set(max(0.0, (utc_now() - frontier).total_seconds()))
