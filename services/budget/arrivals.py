"""When has every application with an earlier place reached the line? The arrival frontier.

Applications reach budget on the applications topic's partitions, each at its own pace. Deciding a
place (earmark, reservation, a waitlist position) before an earlier place has arrived would let
processing speed overtake the applicant's time, so the line decides a place only once the
**frontier** has passed it: the earliest, over all partitions, of each partition's frontier.

A partition's frontier is the latest **watermark** intake wrote to it (``intake.watermark.v1``, see
services/intake/watermarks.py): a time ``W`` such that every application event with a place before
``W`` was already appended to the partition when the watermark was. Intake computes it from its own
database (pending HTTP claims, unrelayed outbox rows, withdrawals under way, and a claim bound for
requests not yet claimed) and writes it to every partition with acks=all after the applications it
covers were acknowledged; on one partition the log keeps that order. So once budget has consumed the
watermark record, it has consumed every application with an earlier place on that partition: the
frontier moves to ``W`` in the consumer's transaction (GREATEST, so it never moves back and a
redelivered or older watermark changes nothing), and never runs ahead of what is in the line. Every
budget instance writes the partitions it owns; the line reads the minimum over all of them, and with a
partition never reported it decides nothing.

This replaced an assumed bound (intake publishes every application at most a second after its place,
and a partition read to its end at ``t`` holds nothing earlier than ``t - 1 s``), which a PostgreSQL
pause, a broker pause or a retried publish broke: the place moved by processing time. A source
watermark is the standard answer (the sources of Google Dataflow and Apache Flink emit them; MillWheel's
low watermark): only the source can see what it has not yet written. It costs a record per partition
every ~150 ms while applications flow and every 10 s when idle, a short exclusive-lock transaction in
intake per watermark, and a wait of at least intake's claim bound (500 ms) before a place is decided.

An application arriving behind its partition's frontier would mean a watermark was false: it is counted
(``budget_late_arrivals_total``, which must stay 0) and logged, and still served at its place from what
is not yet held by others.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from services.budget import metrics

if TYPE_CHECKING:
    from collections.abc import Sequence

    import asyncpg

log = logging.getLogger(__name__)


async def record_watermark(conn: asyncpg.Pool | asyncpg.Connection, partition: int, watermark: datetime) -> None:
    """A watermark read on the partition: its frontier moves on to it (never back)."""
    await record_watermarks(conn, [(partition, watermark)])


async def record_watermarks(conn: asyncpg.Pool | asyncpg.Connection, marks: Sequence[tuple[int, datetime]]) -> None:
    if not marks:
        return
    await conn.execute(
        "INSERT INTO arrival_progress AS p (partition, frontier)"
        " SELECT * FROM unnest($1::int[], $2::timestamptz[])"
        " ON CONFLICT (partition) DO UPDATE SET frontier = GREATEST(p.frontier, EXCLUDED.frontier), updated_at = now()",
        [p for p, _ in marks],
        [at for _, at in marks],
    )


async def record_arrival(conn: asyncpg.Connection, partition: int, place_at: datetime) -> bool:
    """True if the place arrived behind its partition's frontier: a watermark was false. Counted and
    logged; the application is still served at its place from what is not yet held by others."""
    frontier_then = await conn.fetchval("SELECT frontier FROM arrival_progress WHERE partition = $1", partition)
    late = frontier_then is not None and place_at < frontier_then
    if late:
        metrics.LATE_ARRIVALS.inc()
        log.warning("an application arrived behind its partition's frontier", extra={"partition": partition})
    return bool(late)


async def frontier(conn: asyncpg.Pool | asyncpg.Connection, partitions: int) -> datetime | None:
    """Every place before this has arrived; None while some partition has had no watermark yet."""
    row = await conn.fetchrow("SELECT count(*) AS known, min(frontier) AS earliest FROM arrival_progress")
    if row is None or row["known"] < partitions:
        return None
    earliest: datetime = row["earliest"]
    return earliest


async def everything_arrived(conn: asyncpg.Pool | asyncpg.Connection, partitions: int) -> None:
    """For tools and tests that feed the line by hand, without a consumer: nothing is still to come, ever."""
    never = datetime(9999, 1, 1, tzinfo=UTC)
    await record_watermarks(conn, [(p, never) for p in range(partitions)])
