"""When has every application with an earlier place reached the line? The arrival frontier.

Applications reach budget on the applications topic's partitions, each at its own pace. Deciding a
place (earmark, reservation, a waitlist position) before an earlier place has arrived would let
processing speed overtake the applicant's time, so the line decides a place only once the
**frontier** has passed it: the earliest, over all partitions, of how far each has been read.

A partition's frontier is a time before which no application can still arrive on it. It rests on
one bound: intake publishes an application at most ``lateness`` after its place time (its publish
time-to-live, see ``BudgetSettings.arrival_lateness_seconds``). So

- after consuming an application with place time ``p``, nothing later on that partition has a place
  before ``p - lateness`` (it was appended later, hence stamped no earlier than that);
- once the partition was read to its end (position = high watermark, fetched at ``t``), nothing
  still to come has a place before ``t - lateness``.

Both only move forward (GREATEST), in the consumer's transaction or right after its commit, so a
frontier never runs ahead of what is in the line. Every budget instance writes the partitions it owns;
the line reads the minimum over all of them, and with a partition never reported it decides nothing.
An application arriving behind its partition's frontier broke the bound (a broker stalled past
intake's time-to-live): it is counted (``budget_late_arrivals_total``) and still served at its place
from what is not yet held by others.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from services.budget import metrics

if TYPE_CHECKING:
    from collections.abc import Sequence

    import asyncpg

log = logging.getLogger(__name__)


async def record_arrival(conn: asyncpg.Connection, partition: int, place_at: datetime, lateness: float) -> bool:
    """Move the partition's frontier past an arrived place; True if the arrival was late (behind it)."""
    previous = await conn.fetchval(
        "INSERT INTO arrival_progress AS p (partition, frontier) VALUES ($1, $2)"
        " ON CONFLICT (partition) DO UPDATE SET frontier = GREATEST(p.frontier, EXCLUDED.frontier), updated_at = now()"
        " RETURNING (SELECT frontier FROM arrival_progress WHERE partition = $1)",
        partition,
        place_at - timedelta(seconds=lateness),
    )
    late = previous is not None and place_at < previous
    if late:
        metrics.LATE_ARRIVALS.inc()
        log.warning("an application arrived behind its partition's frontier", extra={"partition": partition})
    return late


async def record_read_to_end(
    pool: asyncpg.Pool | asyncpg.Connection, read_at: Sequence[tuple[int, int]], lateness: float
) -> None:
    """``read_at``: (partition, epoch milliseconds of the fetch that found it read to its end)."""
    if not read_at:
        return
    await pool.execute(
        "INSERT INTO arrival_progress AS p (partition, frontier)"
        " SELECT part, to_timestamp(ms / 1000.0) - make_interval(secs => $3)"
        " FROM unnest($1::int[], $2::bigint[]) AS t(part, ms)"
        " ON CONFLICT (partition) DO UPDATE SET frontier = GREATEST(p.frontier, EXCLUDED.frontier), updated_at = now()",
        [p for p, _ in read_at],
        [ms for _, ms in read_at],
        lateness,
    )


async def frontier(conn: asyncpg.Pool | asyncpg.Connection, partitions: int) -> datetime | None:
    """Every place before this has arrived; None while some partition has never been read."""
    row = await conn.fetchrow("SELECT count(*) AS known, min(frontier) AS earliest FROM arrival_progress")
    if row is None or row["known"] < partitions:
        return None
    earliest: datetime = row["earliest"]
    return earliest


async def everything_arrived(conn: asyncpg.Pool | asyncpg.Connection, partitions: int) -> None:
    """For tools and tests that feed the line by hand, without a consumer: nothing is still to come, ever."""
    never = int(datetime(9999, 1, 1, tzinfo=UTC).timestamp() * 1000)
    await record_read_to_end(conn, [(p, never) for p in range(partitions)], 0)
