"""Read every domain topic from its beginning to the end offsets it had when reading started."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from runtime.kafka import KafkaAccess, make_admin, make_reader
from schemas.envelope import Envelope
from schemas.topics import DOMAIN_TOPICS, STREAM_MARKERS, Topic

if TYPE_CHECKING:
    from collections.abc import Iterable

# Told how many records are read so far and how many there are to read (an upper bound: control
# records of transactions count in the offsets but are never delivered).
Progress = Callable[[int, int], None]


def _silent(done: int, total: int) -> None:
    return None


@dataclass
class LogRead:
    envelopes: list[Envelope] = field(default_factory=list)
    # Records on a domain topic that are no envelope, or an event the registry does not put on that
    # topic (so a portal cannot plant an "application.received" by writing the submissions topic):
    # "topic/partition/offset: why".
    unreadable: list[str] = field(default_factory=list)


async def read_log(
    kafka: KafkaAccess, topics: Iterable[Topic] = DOMAIN_TOPICS, progress: Progress = _silent
) -> LogRead:
    """Everything on the topics up to now. Events written while reading are left for the next run.
    Callers bound the time with ``asyncio.timeout``; ``progress`` hears after every fetch."""
    topics = tuple(topics)
    partitions = await partitions_of(kafka, [t.name for t in topics])
    consumer = make_reader(kafka, "egov-audit")
    await consumer.start()
    try:
        consumer.assign(partitions)
        starts, ends = await consumer.beginning_offsets(partitions), await consumer.end_offsets(partitions)
        pending = {tp: ends[tp] for tp in partitions if ends[tp] > starts[tp]}
        if pending:
            await consumer.seek_to_beginning(*pending)
        total = sum(end - starts[tp] for tp, end in pending.items())
        return await _read_until(consumer, pending, {t.name: t for t in topics}, lambda done: progress(done, total))
    finally:
        await consumer.stop()


async def partitions_of(kafka: KafkaAccess, names: list[str]) -> list[TopicPartition]:
    """The partitions of those topics that exist; asking only for existing ones never auto-creates one."""
    admin = make_admin(kafka, "egov-audit")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [n for n in names if n in existing]
        described = await admin.describe_topics(wanted) if wanted else []
    finally:
        await admin.close()
    return sorted(
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in topic["partitions"]
    )


async def _read_until(
    consumer: AIOKafkaConsumer,
    ends: dict[TopicPartition, int],
    topics: dict[str, Topic],
    progress: Callable[[int], None],
) -> LogRead:
    """Fetch until every partition's records up to its end offset are in, judged by the offsets of
    the records received."""
    read = LogRead()
    pending = dict(ends)
    done = 0
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=500)
        for tp, records in batch.items():
            for record in records:
                if record.offset < ends[tp]:
                    done += 1
                    decode_into(read, topics[tp.topic], f"{tp.topic}/{tp.partition}/{record.offset}", record.value)
            if records and records[-1].offset + 1 >= ends[tp]:
                pending.pop(tp, None)
        progress(done)
        if not batch:  # nothing buffered: a partition ending in control records is read when positioned past them
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.pop(tp)
    return read


def decode_into(read: LogRead, topic: Topic, where: str, raw: bytes | None) -> None:
    """Add one record to what was read: as an envelope only if it is one of the topic's own events."""
    try:
        envelope = Envelope.from_bytes(raw or b"")
    except ValidationError as err:
        read.unreadable.append(f"{where}: {err.error_count()} error(s), first: {err.errors()[0]['msg']}")
        return
    if envelope.type not in {cls.wire_type() for cls in topic.event_types}:
        read.unreadable.append(f"{where}: {envelope.type} is not an event of {topic.name}")
        return
    if envelope.type in STREAM_MARKERS:  # about the stream's progress, not any application's history
        return
    read.envelopes.append(envelope)
