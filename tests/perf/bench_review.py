"""Reviews per second through our stream processor beside a plain aiokafka loop (the ceiling).

EGOV_TEST_SLOT=6 deploy/test.sh bench tests/perf/bench_review.py

The same N received applications (mostly eligible, some ineligible, some for a person) sit on a
bench topic. Four runs consume them, each in its own consumer group, timed from the first record
in hand to the last review acknowledged by the broker:

1. ceiling: a plain aiokafka consume-decide-produce loop doing the same rule work, no database;
2. runtime, one transaction per event: ``TransactionalConsumer(batch_size=1)`` with review's handler
   (inbox, review, outbox in one PostgreSQL transaction) and the ``OutboxRelay`` publishing;
3. runtime: ``TransactionalConsumer`` as services run it (a fetched batch per transaction);
4. prototype (a copy here, not in ``runtime/``): the handler takes the whole batch as well, so
   review's statements are per batch (``review_batch``), falling back to the runtime path on error.

It prints reviews/s, the ratio to the ceiling, and the resident memory. ``BENCH_PROFILE=1`` adds a
cProfile of each stream-processor run (top functions by own time); ``BENCH_PG_SSLMODE=disable``
shows what TLS on the loopback connection to PostgreSQL costs.
"""

from __future__ import annotations

import asyncio
import cProfile
import functools
import io
import os
import pstats
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from runtime.consumer import TransactionalConsumer
from runtime.db import create_pool, migrate
from runtime.kafka import KafkaAccess, ensure_topics, make_consumer, make_producer
from runtime.outbox import OutboxRelay, Outgoing, stage
from schemas.application import FundingApplication
from schemas.envelope import Envelope
from schemas.events import ApplicationCompleted, ApplicationReceived, ReviewOutcome
from schemas.rules import load_rules
from schemas.topics import REVIEWS, Topic, dead_letters
from services.review import store
from services.review.handlers import automatic_review, routes
from services.review.rereview import Measure
from services.review.topology import MIGRATIONS
from tests.support import TEST_SLOT, as_intake_writes, fresh_database, sample_application

pytestmark = pytest.mark.perf

N = 2_000
RULES = load_rules()
EARLY_START = {"planned_start": "2027-02-01", "reason": "Der Rahmenvertrag läuft Ende Januar aus."}


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MiB."""
    fields = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)  # noqa: SIM115
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def received_envelopes(n: int) -> list[Envelope]:
    """``n`` applications as intake writes them: each receipt followed by its completion."""
    out = []
    for i in range(n):
        document = sample_application(ags=f"16{i:06d}")
        if i % 10 == 3:  # ineligible: 100 % of the eligible cost
            document["project"].update(
                requested_amount_cents=12_000_000, funding=[{"fiscal_year": 2027, "amount_cents": 12_000_000}]
            )
        if i % 10 == 7:  # a person decides the early start
            document["early_start"] = EARLY_START
        app_id = f"TH-EGOV-2027-{i + 1:07d}"
        event = ApplicationReceived(
            application_id=app_id,
            portal_id="portal-bench",
            received_at=datetime.now(UTC),
            category_open=True,
            application=FundingApplication.model_validate(document),
        )
        out.extend(as_intake_writes(event))  # the receipt and its completion: review reviews complete ones
    return out


@dataclass
class Run:
    name: str
    seconds: float
    outcomes: dict[str, int]

    @property
    def rate(self) -> float:
        return N / self.seconds


@pytest.fixture(scope="module")
async def bench_topic(kafka: KafkaAccess) -> Topic:
    topic = Topic(
        f"bench.review.received.{uuid.uuid4().hex[:8]}",
        "application_id",
        (ApplicationReceived, ApplicationCompleted),
        "bench",
    )
    await ensure_topics(kafka, (topic, REVIEWS, dead_letters("review")))
    producer = make_producer(kafka, "bench-input")
    await producer.start()
    try:
        sends = [
            await producer.send(
                topic.name, e.to_bytes(), key=e.subject.encode(), headers=[("ce_type", e.type.encode())]
            )
            for e in received_envelopes(N)
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return topic


# --- 1. the ceiling: a plain aiokafka loop ---------------------------------------------------


def decide(record_value: bytes) -> tuple[str, str, bytes]:
    """The same rule work as review's handler (the same function builds the result), without the database."""
    envelope = Envelope.from_bytes(record_value)
    received = envelope.payload(ApplicationReceived)
    decided = automatic_review(envelope, received, RULES, (), datetime.now(UTC))
    return received.application_id, decided.outcome.value, decided.event.to_bytes()


async def plain_loop(kafka: KafkaAccess, topic: Topic) -> Run:
    consumer = AIOKafkaConsumer(
        topic.name,
        **kafka.client_options(),
        group_id=f"bench-plain-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
    )
    producer = make_producer(kafka, "bench-plain")
    await producer.start()
    await consumer.start()
    done, started, outcomes = 0, 0.0, Counter[str]()
    try:
        while done < N:
            batch = await consumer.getmany(timeout_ms=200, max_records=500)
            if batch and not started:
                started = time.perf_counter()
            deliveries = []
            for records in batch.values():
                for record in records:
                    key, outcome, value = decide(record.value)
                    outcomes[outcome] += 1
                    deliveries.append(await producer.send(REVIEWS.name, value, key=key.encode()))
            await asyncio.gather(*deliveries)
            await consumer.commit()
            done += len(deliveries)
        return Run("plain aiokafka loop (ceiling)", time.perf_counter() - started, dict(outcomes))
    finally:
        await consumer.stop()
        await producer.stop()


# --- 2./3. the stream processor, as the runtime has it and batched ----------------------------


# Inbox rows for a whole batch in one statement; returns the ids seen for the first time.
INBOX_BATCH = (
    "WITH new AS (INSERT INTO processed_events (consumer, event_id) SELECT $1, unnest($2::text[])"
    " ON CONFLICT DO NOTHING RETURNING event_id) SELECT coalesce(array_agg(event_id), '{}') FROM new"
)


BatchHandler = Callable[[asyncpg.Connection, list[Envelope]], Awaitable[list[Outgoing]]]


async def review_batch(conn: asyncpg.Connection, envelopes: list[Envelope]) -> list[Outgoing]:
    """Prototype of a batch handler for review: the same rules and rows as ``on_received``, with a
    fixed number of statements per batch instead of per event. The double-funding rule sees the
    open applications in the database plus the batch's own earlier ones (receipt order on a
    partition is kept: the batch is walked in fetch order)."""
    received = [e.payload(ApplicationReceived) for e in envelopes]
    seen = {
        r["application_id"]
        for r in await conn.fetch(
            "SELECT application_id FROM reviews WHERE application_id = ANY($1)", [r.application_id for r in received]
        )
    }
    measures = [Measure.of(r) for r in received]
    open_now = [
        Measure(r["application_id"], frozenset(r["applicant_ags"]), r["category"], frozenset(r["fiscal_years"]))
        for r in await conn.fetch(
            "SELECT application_id, applicant_ags, category, fiscal_years FROM reviews"
            " WHERE open AND outcome <> 'ineligible' AND applicant_ags && $1",
            sorted({ags for m in measures for ags in m.ags}),
        )
    ]
    reviewed_at = datetime.now(UTC)
    rows, cases, out = [], [], []
    for envelope, item, measure in zip(envelopes, received, measures, strict=True):
        if item.application_id in seen:
            continue
        seen.add(item.application_id)
        competing = tuple(sorted(m.application_id for m in open_now if m.clashes(measure)))
        decided = automatic_review(envelope, item, RULES, competing, reviewed_at)
        if decided.outcome is not ReviewOutcome.INELIGIBLE:
            open_now.append(measure)
        rows.append(store.review_row(item, decided.outcome, RULES.version, decided.findings, reviewed_at))
        if (flags := decided.case) is not None:
            cases.append((item.application_id, flags.four_eyes, flags.early_start, decided.event.id, reviewed_at))
        out.append(Outgoing(REVIEWS, item.application_id, decided.event))
    await conn.executemany(store.INSERT_REVIEW, rows)
    if cases:
        await conn.executemany(store.OPEN_CASE, cases)
    return out


class BatchHandlingConsumer(TransactionalConsumer):
    """Prototype, one step beyond the runtime's batched transaction: the handler takes the whole
    fetched batch too (``BatchHandler``), so its statements are per batch, not per event. If the
    batch fails, the runtime's own path (batched transaction, then event by event) takes over."""

    batch_handler: BatchHandler = staticmethod(review_batch)

    async def _process_batch(self, records: list[Any]) -> None:
        try:
            envelopes = [Envelope.from_bytes(r.value) for r in records]
            routed = [e for e in envelopes if e.type in self._routes]
            async with self._pool.acquire() as conn, conn.transaction():
                fresh = set(await conn.fetchval(INBOX_BATCH, self.name, [e.id for e in routed]))
                first_copies = []
                for envelope in routed:
                    if envelope.id in fresh:
                        fresh.discard(envelope.id)
                        first_copies.append(envelope)
                await stage(conn, await self.batch_handler(conn, first_copies))
        except Exception:  # noqa: BLE001 - as runtime.consumer: any failure falls back to one by one
            await super()._process_batch(records)


async def stream_processor(
    kafka: KafkaAccess,
    topic: Topic,
    pg_admin_dsn: str,
    consumer_class: Callable[..., TransactionalConsumer],
    label: str,
) -> Run:
    dsn = await fresh_database(pg_admin_dsn, f"egov_test{TEST_SLOT}_review_bench")
    if sslmode := os.environ.get("BENCH_PG_SSLMODE"):  # e.g. "disable": how much TLS to loopback costs
        dsn += f"?sslmode={sslmode}"
    pool = await create_pool(dsn, max_size=10)
    await migrate(pool, MIGRATIONS)
    producer = make_producer(kafka, "bench-review")
    relay = OutboxRelay(pool, producer)
    first_seen: list[float] = []
    handler = routes(RULES)[ApplicationReceived.wire_type()]

    async def timed(conn: asyncpg.Connection, envelope: Envelope) -> Any:
        if not first_seen:
            first_seen.append(time.perf_counter())
        return await handler(conn, envelope)

    async def timed_batch(conn: asyncpg.Connection, envelopes: list[Envelope]) -> list[Outgoing]:
        if not first_seen:
            first_seen.append(time.perf_counter())
        return await review_batch(conn, envelopes)

    group = f"bench-review-{uuid.uuid4().hex[:6]}"
    consumer = consumer_class(
        name=group,
        consumer=make_consumer(kafka, group, [topic], "bench-review"),
        topics=[topic],
        pool=pool,
        routes={ApplicationReceived.wire_type(): timed},
        dead_letter_producer=producer,
        dead_letter_topic=dead_letters("review"),
        relay=relay,
    )
    if isinstance(consumer, BatchHandlingConsumer):
        consumer.batch_handler = timed_batch
    await producer.start()
    await relay.start()
    await consumer.start()
    try:
        while True:  # done when every review is recorded and the relay has published all of them
            reviewed, pending = await pool.fetchrow(
                "SELECT (SELECT count(*) FROM reviews), (SELECT count(*) FROM outbox)"
            )
            if reviewed == N and pending == 0:
                seconds = time.perf_counter() - first_seen[0]
                outcomes = dict(await pool.fetch("SELECT outcome, count(*) FROM reviews GROUP BY outcome"))
                return Run(label, seconds, outcomes)
            await asyncio.sleep(0.02)
    finally:
        await consumer.stop()
        await relay.stop()
        await producer.stop()
        await pool.close()


async def profiled(run: Callable[[], Awaitable[Run]]) -> tuple[Run, str]:
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        result = await run()
    finally:
        profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(18)
    return result, text.getvalue()


async def measure(run: Callable[[], Awaitable[Run]], profiles: list[str]) -> Run:
    if not os.environ.get("BENCH_PROFILE"):
        return await run()
    result, profile = await profiled(run)
    profiles.append(f"--- profile: {result.name} ---\n{profile}")
    return result


async def test_reviews_per_second_beside_the_plain_loop(
    kafka: KafkaAccess, pg_admin_dsn: str, bench_topic: Topic
) -> None:
    deadline = time.monotonic() + 60
    profiles: list[str] = []
    ceiling = await plain_loop(kafka, bench_topic)
    one_by_one = await measure(
        lambda: stream_processor(
            kafka,
            bench_topic,
            pg_admin_dsn,
            functools.partial(TransactionalConsumer, batch_size=1),
            "runtime, one transaction per event",
        ),
        profiles,
    )
    ours = await measure(
        lambda: stream_processor(
            kafka, bench_topic, pg_admin_dsn, TransactionalConsumer, "runtime TransactionalConsumer"
        ),
        profiles,
    )
    batch_handled = await measure(
        lambda: stream_processor(kafka, bench_topic, pg_admin_dsn, BatchHandlingConsumer, "prototype: + batch handler"),
        profiles,
    )
    current, peak = rss_mib()

    print(f"\nreview benchmark: {N} received applications, {bench_topic.partitions} partitions")
    for run in (ceiling, one_by_one, ours, batch_handled):
        share = run.rate / ceiling.rate
        print(f"  {run.name:<34} {run.rate:8.0f} reviews/s  ({run.seconds:.2f} s)  {share:6.1%} of ceiling")
    met = {run.name: "met" if run.rate >= ceiling.rate / 2 else "NOT met" for run in (one_by_one, ours, batch_handled)}
    print(f"  target >= 50 % of the ceiling: {met}")
    print(f"  resident memory of the bench process: {current:.0f} MiB now, {peak:.0f} MiB peak (target <= 150 MiB)")
    print(*profiles, sep="\n")
    assert time.monotonic() < deadline, "the benchmark must stay under a minute"
    expected = {"eligible": N * 8 // 10, "ineligible": N // 10, "needs_manual_review": N // 10}
    for run in (ceiling, one_by_one, ours, batch_handled):
        assert run.outcomes == expected, f"{run.name}: {run.outcomes}"
