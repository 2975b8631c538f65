"""Did an event given up land after all? Read its partition from its receipt time to the end and see.

Asked only once the event cannot land any more (``watermarks.HOLD`` after its receipt time: the topic
refuses records that old), so the answer read now stays true. The partition is the one the producer's
default partitioner picks for the key, as for the first publish.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiokafka import TopicPartition
from aiokafka.partitioner import murmur2

from runtime.kafka import make_reader

if TYPE_CHECKING:
    from runtime.kafka import KafkaAccess
    from schemas.envelope import Envelope
    from schemas.topics import Topic

# Clocks differ a little: start reading somewhat before the record's own timestamp.
SLACK_MS = 5_000


def partition_of(key: str, partitions: int) -> int:
    """aiokafka's (and Java's) default partitioner for a keyed record."""
    index: int = murmur2(key.encode()) & 0x7FFFFFFF
    return index % partitions


async def landed(kafka: KafkaAccess, topic: Topic, envelope: Envelope, partitions: int) -> bool:
    """Whether a record with the envelope's id is on its partition, at or after its time."""
    tp = TopicPartition(topic.name, partition_of(envelope.subject, partitions))
    reader = make_reader(kafka, "intake-landing")
    await reader.start()
    try:
        reader.assign([tp])
        since = int(envelope.time.timestamp() * 1000) - SLACK_MS
        found = (await reader.offsets_for_times({tp: since}))[tp]
        end = (await reader.end_offsets([tp]))[tp]
        if found is None:
            return False  # nothing on the partition is that recent
        reader.seek(tp, found.offset)
        while await reader.position(tp) < end:
            for records in (await reader.getmany(tp, timeout_ms=1000)).values():
                if any(_names(r.headers, envelope.id) for r in records):
                    return True
        return False
    finally:
        await reader.stop()


def _names(headers: tuple[tuple[str, bytes], ...] | list[tuple[str, bytes]] | None, event_id: str) -> bool:
    return any(name == "ce_id" and value == event_id.encode() for name, value in headers or ())
