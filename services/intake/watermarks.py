"""Intake's watermarks: a proven time before which every application event is already on its partition.

Budget's line decides a place only once no earlier place can still arrive (services/budget/arrivals.py).
Only intake knows what it has not yet appended, so intake says so, in the stream itself: a watermark
``W`` is a time such that every application event whose place time lies before ``W`` is already
appended to the applications topic. Intake writes it (``intake.watermark.v1``) to every partition with
the acks=all producer after computing it; an acknowledged application was appended before the
watermark record on the same partition, so a reader that meets ``W`` at offset ``o`` knows every
application on that partition with a place before ``W`` lies before ``o``. This is what stream
processors call a source watermark (Google Dataflow's and Flink's sources emit them, MillWheel's
"low watermark"): the source, not the reader, bounds what is still to come, because only the source
can see it.

**The rule.** ``W = min(received_at of HTTP claims still pending, the earliest time of each unrelayed
outbox row for the topic, the time of withdrawals being published, DB clock - claim bound)``, read from
intake's own database, which every instance shares; every watermark is individually true, so several
instances may each publish theirs.

- *Pending HTTP claims* (``pending_claims``): claimed, not yet recorded as acknowledged (the record
  deletes them; a status row the projection wrote means it landed too).
- *The outbox* (Kafka ingress receipts, ``application.completed``): a row is deleted in the relay's
  transaction after the broker acknowledged it. Its time is the earlier of the row's ``created_at``
  (its transaction's start) and the envelope's ``time``.
- *Withdrawals being published* (``withdrawal_requested_at`` set, not yet withdrawn): at the time they
  carry, ``withdrawal_first_requested_at``.
- *Not yet claimed*: a submission is stamped in memory when its request arrives and claimed a little
  later. A receipt time older than ``DB clock - claim bound`` when the claim runs is moved up to that
  time, so one not yet claimed cannot slip below a watermark that already passed it. Refusing it
  instead (503, retry) was tried first: a burst of 600 on two cores queues claims past half a second,
  and every one behind the bound failed; moved up, they keep their arrival order (claims run in the
  order they queued) and the receipt tells the time kept.

**Why no race.** A claim is stamped, then claimed in a statement that takes
``pg_advisory_xact_lock_shared(INTAKE_WATERMARK)`` before it reads the clock it compares with (one
shared lock per group-committed statement, held to its commit). The watermark takes the same lock
exclusively, in its own transaction, and only then reads, in a statement of its own (READ COMMITTED
takes the snapshot per statement, so it sees every claim that held the lock before it). A claim either
committed before (then it is seen, pending or recorded) or reads its clock after (then its receipt
time is at least that clock minus the bound, above ``W``). The Kafka ingress and the uploads take the
lock shared before they stamp, in the transaction that stages the outbox row; a withdrawal's claim
takes it before reading the clock it stamps with.

**Bounded holds.** A publish given up (503 ``broker.outcome_unknown``) may still be appended later (a
paused broker resumes), so its claim stays pending and holds ``W`` back, but only for ``hold``: the
applications topic refuses records older than ``schemas.topics.RECORD_AGE_MS`` by their own timestamp,
and the HTTP publisher stamps each receipt with its receipt time. After ``hold`` (that age plus a margin
for clocks) the first publish either landed or never will. ``Submissions.settle`` then finds out which
by reading the partition, and if it never landed gives the submission a new receipt time and event id
under the same Idempotency-Key, so an unanswered claim never holds the line back for ever.

**What it costs.** While applications flow, one short transaction (the exclusive lock makes claims wait
for it, a millisecond or two) and one record per partition every ``interval``; then a few more until
``quiet`` has passed (a place is passed only once ``W`` is, ``claim bound`` after it), then one every
``heartbeat``: budget commits a reservation only once the frontier has passed the reservation's own
time, which no application event moves. On the claim path: the shared lock and a clock read per
group statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg

from runtime.locks import AdvisoryLock
from schemas.envelope import Envelope
from schemas.events import IntakeWatermark
from schemas.topics import APPLICATIONS, RECORD_AGE_MS
from services.intake import store
from services.intake.publisher import Unacknowledged

if TYPE_CHECKING:
    from services.intake.publisher import BoundedPublisher

log = logging.getLogger(__name__)
SOURCE = "/egov/intake"
SUBJECT = "intake-watermark"
# A claim or withdrawal given up holds the watermark back this long after its time: the broker refuses
# its record after RECORD_AGE_MS, and clocks may differ by a few seconds.
HOLD = timedelta(milliseconds=RECORD_AGE_MS) + timedelta(seconds=5)
# How long a watermark waits for the claims under way before it gives the round up.
LOCK_PATIENCE_MS = 50


def watermark(now: datetime, claim_bound: timedelta, *unappended: datetime | None) -> datetime:
    """The earliest of what is still to be appended, and of what may not yet be claimed."""
    return min([now - claim_bound, *(t for t in unappended if t is not None)])


@dataclass(frozen=True)
class Schedule:
    """When the next watermark is due, in seconds from the last one (monotonic clock)."""

    interval: float = 0.15
    # After the last application published: long enough for its place to be passed (claim bound) and
    # for the reservation budget makes of it to be passed too.
    quiet: float = 3.0
    # While something held the last watermark back (a claim unanswered, an outbox row unrelayed).
    held: float = 1.0
    heartbeat: float = 10.0

    def wait(self, since_activity: float, held_back: bool) -> float:
        if since_activity < self.quiet:
            return self.interval
        return self.held if held_back else self.heartbeat


async def compute(pool: asyncpg.Pool, claim_bound: timedelta, hold: timedelta = HOLD) -> tuple[datetime, bool] | None:
    """The watermark now, and whether something intake has not yet appended held it back; None if a
    claim held the lock too long this round (a queued exclusive lock would make every new claim wait
    behind it, so the watermark yields, and a stuck claim holds back nothing but watermarks)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_PATIENCE_MS}ms'")
        try:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", AdvisoryLock.INTAKE_WATERMARK.value)
        except asyncpg.LockNotAvailableError:
            return None
        row = await store.unappended(conn, APPLICATIONS.name, hold)
    pending = (row["claimed"], row["withdrawing"], row["staged"])
    at = watermark(row["now"], claim_bound, *pending)
    return at, at < row["now"] - claim_bound


class Watermarks:
    """Computes and publishes the watermark while applications flow, and now and then when idle."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        publisher: BoundedPublisher,
        instance: str,
        claim_bound: timedelta,
        schedule: Schedule | None = None,
    ) -> None:
        self._pool, self._publisher, self._instance = pool, publisher, instance
        self._claim_bound = claim_bound
        self._schedule = schedule or Schedule()
        self._active_at = -1e9
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def notice(self) -> None:
        """Something was appended or staged for the applications topic: watermarks are due again."""
        self._active_at = time.monotonic()
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="watermarks")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task:
            await self._task

    async def _run(self) -> None:
        while not self._stopping:
            held_back = True
            try:
                published = await self.publish()
                held_back = published is None or published[1]
            except Exception:  # the broker or the database is away: the next round tries again
                log.warning("watermark not published, will retry", exc_info=True)
            wait = self._schedule.wait(time.monotonic() - self._active_at, held_back)
            self._wake.clear()
            if wait > self._schedule.interval:  # quiet: the next application wakes us at once
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
            else:
                await asyncio.sleep(wait)

    async def publish(self) -> tuple[datetime, bool] | None:
        """Compute the watermark and write it to every partition; raises Unacknowledged if one was not.
        None: claims held the lock, no watermark this round."""
        computed = await compute(self._pool, self._claim_bound)
        if computed is None:
            return None
        at, held_back = computed
        partitions = self._publisher.partitions(APPLICATIONS)
        sent = await asyncio.gather(*(self._publish_to(p, at) for p in range(partitions)), return_exceptions=True)
        failed = [r for r in sent if isinstance(r, BaseException)]
        if failed:
            raise Unacknowledged(f"{len(failed)} of {partitions} watermarks not acknowledged") from failed[0]
        return at, held_back

    async def _publish_to(self, partition: int, at: datetime) -> None:
        event = IntakeWatermark(watermark=at, partition=partition, instance=self._instance)
        envelope = Envelope.wrap(event, source=SOURCE, subject=SUBJECT, actor="intake")
        await self._publisher.publish(APPLICATIONS, SUBJECT, envelope, partition=partition)
