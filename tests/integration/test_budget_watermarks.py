"""Budget's arrival frontier moves on intake's watermarks alone, through the real consumer and broker.

The line's consumer reads the applications topic of a broker of the session's own (hand-made events);
the test plays intake: it writes a receipt, then watermarks to chosen partitions, and looks at what
the frontier and the line make of them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from runtime.consumer import TransactionalConsumer
from runtime.kafka import KafkaAccess, headers_of, make_consumer, make_producer, publish
from schemas.envelope import Envelope
from schemas.events import IntakeWatermark
from schemas.topics import APPLICATIONS, dead_letters
from services.budget import admin, arrivals
from services.budget.handlers import routes
from services.budget.line import LineSettings
from services.budget.lineserver import LineServer
from services.intake.landing import partition_of
from tests.integration.budget_support import app_id, budget_pool, received, reset
from tests.support import TEST_SLOT

pytestmark = pytest.mark.integration

LINE = LineSettings(policy="strict", commit_after_seconds=0)


@pytest.fixture
async def pool(pg_admin_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    async for p in budget_pool(pg_admin_dsn, f"egov_test{TEST_SLOT}_budget_watermarks"):
        await reset(p)
        await p.execute("DELETE FROM arrival_progress")
        async with p.acquire() as conn, conn.transaction():
            await admin.open_fiscal_year(conn, 2027, 10_000, "admin:test", LINE)
        yield p


@pytest.fixture
async def producer(scratch_kafka: KafkaAccess) -> AsyncIterator[AIOKafkaProducer]:
    writer = make_producer(scratch_kafka, "test-intake")
    await writer.start()
    try:
        yield writer
    finally:
        await writer.stop()


@pytest.fixture
async def line_consumer(
    scratch_kafka: KafkaAccess, pool: asyncpg.Pool, producer: AIOKafkaProducer
) -> AsyncIterator[TransactionalConsumer]:
    group = f"test-line-{uuid.uuid4().hex[:8]}"
    consumer = TransactionalConsumer(
        name=group,
        consumer=make_consumer(scratch_kafka, group, [APPLICATIONS], "test", offset_reset="latest"),
        topics=[APPLICATIONS],
        pool=pool,
        routes=routes(LINE),
        dead_letter_producer=producer,
        dead_letter_topic=dead_letters("budget"),
    )
    await consumer.start()
    await asyncio.wait_for(consumer.caught_up.wait(), 60)
    try:
        yield consumer
    finally:
        await consumer.stop()


async def watermark(producer: AIOKafkaProducer, at: datetime, partitions: range | list[int]) -> None:
    """As intake writes them: one record per partition, each on the partition it speaks for."""
    for p in partitions:
        envelope = Envelope.wrap(
            IntakeWatermark(watermark=at, partition=p, instance="test"),
            source="/egov/intake",
            subject="intake-watermark",
        )
        await producer.send_and_wait(
            APPLICATIONS.name, envelope.to_bytes(), key=b"intake-watermark", partition=p, headers=headers_of(envelope)
        )


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    for _ in range(int(timeout * 10)):
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached")


async def frontier(pool: asyncpg.Pool) -> datetime | None:
    return await arrivals.frontier(pool, LINE.partitions)


async def status(pool: asyncpg.Pool, n: int) -> str | None:
    return await pool.fetchval("SELECT status FROM line WHERE application_id = $1", app_id(n))  # type: ignore[no-any-return]


async def tick(pool: asyncpg.Pool) -> None:
    await LineServer(pool, relay=None, line=LINE, interval=0.1).tick()  # type: ignore[arg-type]


async def test_the_frontier_moves_on_watermarks_only_and_never_back(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, line_consumer: TransactionalConsumer, scratch_kafka: KafkaAccess
) -> None:
    place = datetime.now(UTC)
    await publish(producer, APPLICATIONS, app_id(1), received(1, 100, place=place))
    await until(lambda: _in_line(pool, 1))
    # Read to its end, again and again: under the old rule the frontier would now be past the place.
    await asyncio.sleep(2)
    await tick(pool)
    assert await frontier(pool) is None
    assert await status(pool, 1) == "waiting"

    own = partition_of(app_id(1), LINE.partitions)
    others = [p for p in range(LINE.partitions) if p != own]
    past = place + timedelta(milliseconds=1)
    await watermark(producer, past, others)
    await until(lambda: _known(pool, len(others)))
    await tick(pool)
    assert await frontier(pool) is None  # its own partition has said nothing yet
    assert await status(pool, 1) == "waiting"

    await watermark(producer, place, [own])  # reaching the place is not passing it
    await until(lambda: _known(pool, LINE.partitions))
    await tick(pool)
    assert await frontier(pool) == place
    assert await status(pool, 1) == "waiting"

    await watermark(producer, past, [own])
    await until(lambda: _frontier_is(pool, past))
    await tick(pool)
    assert await status(pool, 1) == "earmarked"

    await watermark(producer, place - timedelta(seconds=5), range(LINE.partitions))  # an older one, later
    await watermark(producer, past + timedelta(milliseconds=1), [own])  # a marker that it was read
    await until(lambda: _frontier_is(pool, past, partition=own, at=past + timedelta(milliseconds=1)))
    assert await frontier(pool) == past
    assert await pool.fetchval("SELECT count(*) FROM processed_events") == 1  # the receipt's: none for watermarks


async def test_an_application_behind_a_watermark_is_counted_late(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, line_consumer: TransactionalConsumer
) -> None:
    place = datetime.now(UTC)
    own = partition_of(app_id(2), LINE.partitions)
    await watermark(producer, place + timedelta(seconds=1), [own])
    await until(lambda: _known(pool, 1))
    before = late_arrivals()
    await publish(producer, APPLICATIONS, app_id(2), received(2, 100, place=place))  # a watermark lied
    await until(lambda: _in_line(pool, 2))
    assert late_arrivals() == before + 1


def late_arrivals() -> float:
    return REGISTRY.get_sample_value("egov_budget_late_arrivals_total") or 0.0


async def _in_line(pool: asyncpg.Pool, n: int) -> bool:
    return await status(pool, n) is not None


async def _known(pool: asyncpg.Pool, partitions: int) -> bool:
    return bool(await pool.fetchval("SELECT count(*) FROM arrival_progress") >= partitions)


async def _frontier_is(
    pool: asyncpg.Pool, earliest: datetime, *, partition: int | None = None, at: datetime | None = None
) -> bool:
    if partition is not None:
        mine = await pool.fetchval("SELECT frontier FROM arrival_progress WHERE partition = $1", partition)
        if mine != at:
            return False
    return await frontier(pool) == earliest
