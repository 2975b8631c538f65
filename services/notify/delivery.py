"""Delivering notices: claim what is due, attempt it, hand the outcome to the recorder.

Per destination (the SMTP relay; each portal's endpoint) at most ``*_concurrency`` attempts run
at once in an instance, and the claim leases at most ``claim_ahead`` times that many notices per
destination across all instances: a slow or dead receiver ties up only its own notices, and the
next attempt for a fast one is in hand when a slot frees. The claim loop never waits for an
attempt. Receivers de-duplicate on the notice id (``webhook-id``, the e-mail's Message-ID),
which a resend after a crash keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from runtime.crashpoints import crash_point
from schemas.events import NoticeChannel
from services.notify import metrics, store
from services.notify.domain import retry_delay
from services.notify.outcomes import Outcome, Recorder
from services.notify.senders import CallbackSender, DeliveryError, EmailSender, PermanentDeliveryError, Sender

if TYPE_CHECKING:
    import uuid
    from collections.abc import AsyncIterator

    import asyncpg

    from runtime.outbox import OutboxRelay
    from services.notify.settings import NotifySettings

log = logging.getLogger(__name__)
# The longest an idle deliverer sleeps without being woken: what a notice made outside this process
# (another instance, the redelivery API) may wait. Polling every poll_seconds cost an idle stack a
# claim transaction five times a second.
IDLE_POLL_SECONDS = 2.0
EMAIL, CALLBACK = NoticeChannel.EMAIL.value, NoticeChannel.CALLBACK.value


@dataclass
class _Lane:
    slots: asyncio.Semaphore
    users: int = 0


class Lanes:
    """One semaphore per destination with notices in hand; gone when its last notice is done."""

    def __init__(self) -> None:
        self._lanes: dict[str, _Lane] = {}

    @contextlib.asynccontextmanager
    async def slot(self, destination: str, limit: int) -> AsyncIterator[None]:
        lane = self._lanes.get(destination) or self._lanes.setdefault(destination, _Lane(asyncio.Semaphore(limit)))
        lane.users += 1
        try:
            async with lane.slots:
                yield
        finally:
            lane.users -= 1
            if not lane.users:
                del self._lanes[destination]


class Deliverer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        relay: OutboxRelay,
        settings: NotifySettings,
        senders: dict[str, Sender] | None = None,
    ) -> None:
        self._pool, self._s = pool, settings
        self._senders = senders or {EMAIL: EmailSender(settings), CALLBACK: CallbackSender(settings)}
        self._recorder = Recorder(pool, relay, self.wake)
        self._lanes = Lanes()
        self._lease = timedelta(seconds=settings.lease_seconds)
        self._attempts: set[asyncio.Task[None]] = set()
        self._unstarted: list[uuid.UUID] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._recorder.start()
        self._task = asyncio.create_task(self._run(), name="deliverer")

    async def stop(self) -> None:
        """Claim nothing more, let running attempts finish (each is bounded in time) and record them;
        notices still waiting for a slot are handed back, due at once for whoever runs next."""
        self._stopping = True
        self._wake.set()
        if self._task:
            await self._task
        await asyncio.gather(*self._attempts, return_exceptions=True)
        await self._recorder.stop()
        if self._unstarted:
            try:
                await store.release(self._pool, self._unstarted)
            except Exception:  # their leases run out instead
                log.warning("could not hand back unstarted notices", exc_info=True)
        for sender in self._senders.values():
            await sender.close()

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            claimed = 0
            try:
                claimed = await self._claim()
            except Exception:
                log.warning("claiming notices failed, will retry", exc_info=True)
            if claimed == 0 or len(self._attempts) >= self._s.max_in_flight:
                wait = self._s.poll_seconds if claimed else await self._until_due()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                self._wake.clear()

    async def _until_due(self) -> float:
        """Nothing was claimable: sleep until the earliest pending notice comes due, within
        [poll_seconds, IDLE_POLL_SECONDS]. New notices wake the loop (the consumer's commits), and so
        do recorded outcomes (the next notice of an application in order); the bound catches notices
        another instance or the redelivery API made."""
        try:
            due = await store.next_due(self._pool)
        except Exception:
            log.warning("reading the next due notice failed, will retry", exc_info=True)
            return self._s.poll_seconds
        if due is None:
            return IDLE_POLL_SECONDS
        return min(IDLE_POLL_SECONDS, max(self._s.poll_seconds, (due - datetime.now(UTC)).total_seconds()))

    async def _claim(self) -> int:
        room = self._s.max_in_flight - len(self._attempts)
        if room <= 0:
            return 0
        ahead = self._s.claim_ahead
        email_cap, callback_cap = ahead * self._s.smtp_concurrency, ahead * self._s.callback_concurrency
        due = await store.claim_due(self._pool, room, self._lease, email_cap, callback_cap)
        for notice in due:
            task = asyncio.create_task(self._attempt(notice))
            self._attempts.add(task)
            task.add_done_callback(self._finished)
        metrics.IN_FLIGHT.set(len(self._attempts))
        return len(due)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._attempts.discard(task)
        metrics.IN_FLIGHT.set(len(self._attempts))
        self._wake.set()

    async def _attempt(self, notice: asyncpg.Record) -> None:
        channel = notice["channel"]
        limit = self._s.smtp_concurrency if channel == EMAIL else self._s.callback_concurrency
        async with self._lanes.slot(notice["destination"], limit):
            if self._stopping:  # still waiting for its slot: hand it back rather than delay the stop
                self._unstarted.append(notice["notice_id"])
                return
            started = time.perf_counter()
            outcome = await self._try(notice)
            if outcome.error is None:
                crash_point("notify.after_delivery")
            metrics.ATTEMPT_SECONDS.labels(channel).observe(time.perf_counter() - started)
        self._recorder.add(outcome)

    async def _try(self, notice: asyncpg.Record) -> Outcome:
        try:
            await self._senders[notice["channel"]].send(notice)
        except PermanentDeliveryError as err:  # e.g. the endpoint now resolves inside: given up, dead-lettered
            return Outcome(notice, str(err), None)
        except DeliveryError as err:
            return self._failure(notice, str(err))
        except Exception as err:  # a bug must not kill the loop; the attempt counts as failed
            log.exception("delivery attempt crashed", extra={"notice_type": notice["notice_type"]})
            return self._failure(notice, f"internal {type(err).__name__}")
        return Outcome(notice)

    def _failure(self, notice: asyncpg.Record, error: str) -> Outcome:
        """Try again later, or give up after the attempt budget or the age limit."""
        s = self._s
        attempts = notice["attempts"] + 1
        now = datetime.now(UTC)
        if attempts >= s.max_attempts or (now - notice["window_started_at"]).total_seconds() >= s.max_age_seconds:
            return Outcome(notice, error, None)
        delay = retry_delay(attempts, s.first_retry_seconds, s.max_retry_seconds, random.random())
        return Outcome(notice, error, now + timedelta(seconds=delay))
