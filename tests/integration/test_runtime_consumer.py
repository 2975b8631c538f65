"""The effectively-once consumer against the real broker and database: batches, duplicates,
poison messages and garbage, with the stream still flowing."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from prometheus_client import REGISTRY

from runtime.consumer import Handler, TransactionalConsumer, wire_of
from runtime.db import migrate
from runtime.deadletters import record_size
from runtime.kafka import KafkaAccess, ensure_topics, make_admin, make_consumer, make_producer, make_reader
from runtime.outbox import Outgoing
from schemas.envelope import Envelope
from schemas.events import ApplicationReceived, ApplicationWithdrawn
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
    last = withdrawal(99)
    await producer.send_and_wait(source.name, last.to_bytes(), key=last.subject.encode())
    consumer = TransactionalConsumer(
        name=f"test-{run}",
        consumer=make_consumer(kafka, f"test-{run}", [source], "test"),
        topics=[source],
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


# --- nothing swallowed: wrong keys and unknown types ------------------------------------------------


async def consumer_for(
    kafka: KafkaAccess,
    pool: asyncpg.Pool,
    source: Topic,
    dead: Topic,
    routes: dict[str, Handler],
    producer: AIOKafkaProducer,
) -> TransactionalConsumer:
    group = f"test-{uuid.uuid4().hex[:8]}"
    return TransactionalConsumer(
        name=group,
        consumer=make_consumer(kafka, group, [source], "test"),
        topics=[source],
        pool=pool,
        routes=routes,
        dead_letter_producer=producer,
        dead_letter_topic=dead,
    )


async def recording_pool(pg_admin_dsn: str) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(await fresh_database(pg_admin_dsn, f"egov_test{TEST_SLOT}_runtime"))
    await migrate(pool)
    await pool.execute("CREATE TABLE seen (event_id text PRIMARY KEY)")
    return pool


async def record_it(conn: asyncpg.Connection, envelope: Envelope) -> Sequence[Outgoing]:
    await conn.execute("INSERT INTO seen VALUES ($1)", envelope.id)
    return ()


async def wait_seen(pool: asyncpg.Pool, count: int, seconds: float = 30) -> set[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen = {r[0] for r in await pool.fetch("SELECT event_id FROM seen")}
        if len(seen) >= count:
            return seen
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} events handled in {seconds} s")


def consumed(topic: Topic, label: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "egov_events_consumed_total", {"topic": topic.name, "type": label, "outcome": outcome}
    )
    return value or 0.0


async def test_a_record_under_a_wrong_key_is_dead_lettered_and_an_unknown_type_is_counted_and_reported(
    kafka: KafkaAccess, pg_admin_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    run = uuid.uuid4().hex[:8]
    source = Topic(f"egov.test-{run}.v1", "application_id", (ApplicationWithdrawn, ApplicationReceived), "test")
    dead = Topic(f"egov.test-{run}.deadletter.v1", "original key", (), "test", partitions=1)
    await ensure_topics(kafka, (source, dead))
    pool = await recording_pool(pg_admin_dsn)
    first, wrong, keyless, last = withdrawal(1), withdrawal(2), withdrawal(3), withdrawal(4)
    teleported = Envelope(
        id=str(uuid.uuid4()),
        source="/test",
        type="de.thueringen.egov.application.teleported.v1",
        subject="TH-EGOV-2027-000005",
        time=datetime.now(UTC),
        correlationid="TH-EGOV-2027-000005",
        data={"contact": {"name": "Erika Mustermann", "email": "erika@example.org"}},
    )
    producer = make_producer(kafka, "test")
    await producer.start()
    for envelope, key in (
        (first, first.subject.encode()),
        (wrong, b"TH-EGOV-2027-999999"),  # another application's key: the wrong partition, out of its order
        (keyless, None),
        (teleported, teleported.subject.encode()),
        (last, last.subject.encode()),
    ):
        await producer.send_and_wait(source.name, envelope.to_bytes(), key=key)
    unknown_before = consumed(source, "unknown", "unknown_type")
    caplog.set_level(logging.WARNING, logger="runtime")
    consumer = await consumer_for(kafka, pool, source, dead, {ApplicationWithdrawn.wire_type(): record_it}, producer)
    await consumer.start()
    try:
        assert await wait_seen(pool, 2) == {first.id, last.id}, "only the rightly keyed events of known types"
        letters = await read_raw(kafka, dead.name, 2)
    finally:
        await consumer.stop()
        await producer.stop()
        await pool.close()
    assert sorted(dict(h)["dlq_reason"] for _, h in letters) == [b"wrong_key", b"wrong_key"]
    assert {v for v, _ in letters} == {wrong.to_bytes(), keyless.to_bytes()}, "the originals, whole"
    assert consumed(source, "unknown", "unknown_type") == unknown_before + 1
    reports = [r for r in caplog.records if getattr(r, "event_id", None) == teleported.id]
    assert [r.levelno for r in reports] == [logging.WARNING]
    assert reports[0].event_type == teleported.type  # type: ignore[attr-defined]
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "Mustermann" not in logged, "no payload in the logs"
    assert "erika@" not in logged


# --- one record never stalls a consumer -------------------------------------------------------------


async def create_topic(kafka: KafkaAccess, name: str, max_message_bytes: int | None = None) -> None:
    admin = make_admin(kafka, "test-admin")
    await admin.start()
    try:
        config = {"max.message.bytes": str(max_message_bytes)} if max_message_bytes else {}
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs=config)])
    finally:
        await admin.close()


async def committed_offset(kafka: KafkaAccess, group: str, tp: TopicPartition) -> int | None:
    admin = make_admin(kafka, "test-admin")
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
    finally:
        await admin.close()
    meta = offsets.get(tp)
    return meta.offset if meta is not None else None


NEAR_ONE_MIB = 1_048_390  # the size of the record that stalled intake's submissions consumer


@pytest.mark.parametrize(
    ("broker_limit", "parked"),
    [
        pytest.param(None, "cut", id="cut-to-fit"),
        pytest.param(4096, "bare", id="broker-refuses-the-cut-copy"),
        pytest.param(64, "lost", id="broker-refuses-even-a-bare-letter"),
    ],
)
async def test_a_near_1_mib_record_is_parked_cut_to_fit_and_the_consumer_moves_past_it(
    kafka: KafkaAccess, pg_admin_dsn: str, broker_limit: int | None, parked: str
) -> None:
    run = uuid.uuid4().hex[:8]
    source = Topic(f"egov.test-{run}.v1", "submission_id", (ApplicationWithdrawn,), "test", partitions=1)
    dead = Topic(f"egov.test-{run}.deadletter.v1", "original key", (), "test", partitions=1)
    await create_topic(kafka, source.name)
    await create_topic(kafka, dead.name, broker_limit)  # the registry's limit, unless the broker says less
    pool = await recording_pool(pg_admin_dsn)
    rng = random.Random(run)
    huge = b"\xff" + rng.randbytes(NEAR_ONE_MIB - 1)  # not JSON: undecodable
    signature = [("egov-signature-id", b"x" * 36)]  # as much as still lets the original fit the limit
    before, after = withdrawal(6), withdrawal(7)
    producer = make_producer(kafka, "test")
    await producer.start()
    await producer.send_and_wait(source.name, before.to_bytes(), key=before.subject.encode())
    lost_before = REGISTRY.get_sample_value(
        "egov_dead_letters_lost_total", {"topic": source.name, "reason": "undecodable"}
    )
    consumer = await consumer_for(kafka, pool, source, dead, {ApplicationWithdrawn.wire_type(): record_it}, producer)
    await consumer.start()
    tp = TopicPartition(source.name, 0)

    async def committed_reaches(offset: int) -> int | None:
        for _ in range(100):
            if (committed := await committed_offset(kafka, consumer.name, tp)) == offset:
                return committed
            await asyncio.sleep(0.1)
        return committed

    try:
        # The group has a committed offset before the huge record: a rewind goes back to it, not past it.
        assert await committed_reaches(1) == 1
        await producer.send_and_wait(source.name, huge, key=b"sub-huge", headers=signature)
        await producer.send_and_wait(source.name, after.to_bytes(), key=after.subject.encode())
        assert await wait_seen(pool, 2) == {before.id, after.id}, "the record behind the huge one was handled"
        assert await committed_reaches(3) == 3, "the group's offset passed the huge record and the next"
        letters = await read_raw(kafka, dead.name, 1) if parked != "lost" else []
    finally:
        await consumer.stop()
        await producer.stop()
        await pool.close()
    if parked == "lost":
        lost_after = REGISTRY.get_sample_value(
            "egov_dead_letters_lost_total", {"topic": source.name, "reason": "undecodable"}
        )
        assert (lost_after or 0) == (lost_before or 0) + 1
        return
    [(value, headers)] = letters
    meta = dict(headers)
    assert meta["dlq_reason"] == b"undecodable"
    assert meta["dlq_origin"] == f"{source.name}/0/1".encode()
    assert meta["dlq_original_size"] == str(NEAR_ONE_MIB).encode()
    assert meta["dlq_original_sha256"] == hashlib.sha256(huge).hexdigest().encode()
    assert meta["dlq_truncated"] == b"true"
    if parked == "cut":
        assert 0 < len(value) < NEAR_ONE_MIB
        assert huge.startswith(value), "a prefix of the original"
        assert record_size(b"sub-huge", value, headers) <= dead.max_message_bytes
        assert meta["egov-signature-id"] == b"x" * 36, "the original headers travel along"
    else:
        assert value == b""
        assert meta["dlq_value_dropped"] == b"true"
