"""The effectively-once consumer against the real broker and database: batches, duplicates,
poison messages and garbage, with the stream still flowing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import asyncpg
import pytest
from aiokafka import TopicPartition

from runtime.consumer import TransactionalConsumer, wire_of
from runtime.db import migrate
from runtime.kafka import KafkaAccess, ensure_topics, make_consumer, make_producer, make_reader
from runtime.outbox import Outgoing
from schemas.envelope import Envelope
from schemas.events import ApplicationWithdrawn
from schemas.topics import Topic
from tests.support import TEST_SLOT, fresh_database

pytestmark = pytest.mark.integration


def withdrawal(n: int) -> Envelope:
    event = ApplicationWithdrawn(application_id=f"TH-EGOV-2027-{n:06d}", portal_id="p")
    return Envelope.wrap(event, source="/test", subject=event.application_id)


async def test_batches_deduplicate_isolate_poison_and_dead_letter_garbage(
    kafka: KafkaAccess, pg_admin_dsn: str
) -> None:
    run = uuid.uuid4().hex[:8]
    source = Topic(f"egov.test-{run}.v1", "application_id", (ApplicationWithdrawn,), "test")
    dead = Topic(f"egov.test-{run}.deadletter.v1", "original key", (), "test", partitions=1)
    await ensure_topics(kafka, (source, dead))
    pool = await asyncpg.create_pool(await fresh_database(pg_admin_dsn, f"egov_test{TEST_SLOT}_runtime"))
    await migrate(pool)
    await pool.execute("CREATE TABLE seen (event_id text, application_id text, raw bytea, tag bytea)")
    poison = withdrawal(13)

    async def handler(conn: asyncpg.Connection, envelope: Envelope) -> Sequence[Outgoing]:
        if envelope.id == poison.id:
            raise RuntimeError("this one always fails")
        wire = wire_of(envelope)  # the record's exact bytes and headers, in the batch and one by one
        assert wire is not None
        tag = dict(wire.headers).get("test-tag")
        await conn.execute("INSERT INTO seen VALUES ($1, $2, $3, $4)", envelope.id, envelope.subject, wire.value, tag)
        return ()

    producer = make_producer(kafka, "test")
    await producer.start()
    good = [withdrawal(n) for n in range(1, 41) if n != 13]
    for envelope in [*good[:20], poison, *good[:5], *good[20:]]:  # five redeliveries in the middle
        tag = [("test-tag", envelope.id.encode())]
        await producer.send_and_wait(source.name, envelope.to_bytes(), key=envelope.subject.encode(), headers=tag)
    await producer.send_and_wait(source.name, b"\x00 not json", key=b"k")
    await producer.send_and_wait(source.name, withdrawal(99).to_bytes(), key=b"k")
    consumer = TransactionalConsumer(
        name=f"test-{run}",
        consumer=make_consumer(kafka, f"test-{run}", [source], "test"),
        pool=pool,
        routes={ApplicationWithdrawn.wire_type(): handler},
        dead_letter_producer=producer,
        dead_letter_topic=dead,
        batch_size=16,
    )
    await consumer.start()
    try:
        for _ in range(200):
            if await pool.fetchval("SELECT count(*) FROM seen") >= len(good) + 1:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
    finally:
        await consumer.stop()
        await producer.stop()
    rows = await pool.fetch("SELECT event_id, raw, tag FROM seen")
    await pool.close()
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)) == len(good) + 1, "every good event exactly once, after the garbage too"
    sent = {e.id: e.to_bytes() for e in good}
    assert all(r["raw"] == sent[r["event_id"]] and r["tag"] == r["event_id"].encode() for r in rows if r[0] in sent)
    dead_letters = await read_raw(kafka, dead.name, 2)
    reasons = sorted(dict(h)["dlq_reason"].decode() for _, h in dead_letters)
    assert reasons == ["handler_error", "undecodable"]
    origins = [dict(h)["dlq_origin"].decode() for _, h in dead_letters]
    assert all(o.startswith(source.name + "/") for o in origins)


async def read_raw(kafka: KafkaAccess, topic: str, count: int) -> list[tuple[bytes, list[tuple[str, bytes]]]]:
    consumer = make_reader(kafka, "test-raw-reader")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        found: list[tuple[bytes, list[tuple[str, bytes]]]] = []
        for _ in range(50):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found.extend((r.value, list(r.headers)) for r in records)
            if len(found) >= count:
                break
        return found
    finally:
        await consumer.stop()
