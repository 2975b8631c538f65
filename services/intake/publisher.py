"""Publishing what a portal waits for: an answer within a bound, and an honest one when there is none.

The runtime's idempotent producer retries a batch until the broker takes it, however long the
broker is away. That is right for the outbox relay, but wrong behind an HTTP answer, which must
come within a bound. This producer is acks=all without idempotence, so aiokafka gives a batch up
when it is not acknowledged within its time to live, and we wait for that verdict instead of
guessing with our own timeout. A retried batch may be written twice; every consumer de-duplicates
by event id.

Given up does not mean not written: a request already sent to a broker that is paused (SIGSTOP, a
long GC pause, a stalled disk) is still appended when the broker resumes. So ``Unacknowledged``
means "the outcome is unknown", and the caller must say so (intake answers 503
``broker.outcome_unknown``) and settle it later: a retry with the same Idempotency-Key finds the
event landed, or publishes the same bytes again (``submission.Submissions.settle``).

How long "later" may be is bounded by the topic, not by us: an application.received is sent with its
receipt time as the record's timestamp, and the applications topic refuses records older than
``schemas.topics.RECORD_AGE_MS`` by that timestamp, so even a request a paused broker kept lands
within that bound or never. Intake's watermark relies on it (``watermarks.py``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from runtime.kafka import KafkaAccess, headers_of
from runtime.metrics import EVENTS_PRODUCED

if TYPE_CHECKING:
    from datetime import datetime

    from aiokafka.structs import RecordMetadata

    from schemas.envelope import Envelope
    from schemas.topics import Topic


class Unacknowledged(Exception):
    """The event was not acknowledged in time; the producer gave it up. It may still have been written."""


class BoundedPublisher:
    def __init__(self, kafka: KafkaAccess, client_id: str, timeout_ms: int) -> None:
        # A batch lives at most half the bound (one retry after a request timeout fits in the bound).
        self._ttl_ms = timeout_ms // 2
        self._patience = timeout_ms / 1000 + 1.0
        self.producer = AIOKafkaProducer(
            **kafka.client_options(),
            client_id=client_id,
            acks="all",
            enable_idempotence=False,
            linger_ms=1,
            request_timeout_ms=self._ttl_ms,
            retry_backoff_ms=100,
            max_batch_size=256 * 1024,
        )

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def publish(
        self,
        topic: Topic,
        key: str,
        envelope: Envelope,
        *,
        stamped: datetime | None = None,
        partition: int | None = None,
    ) -> RecordMetadata:
        """Return once acks=all; raise Unacknowledged once the producer has given the event up.

        ``stamped``: the record's timestamp (else now). An application.received carries its receipt
        time, so a topic with ``max_record_age_ms`` refuses it once that much older, even from a
        request a paused broker kept: a publish given up lands within that bound or never."""
        try:
            delivery = await self.producer.send(
                topic.name,
                envelope.to_bytes(),
                key=key.encode(),
                headers=headers_of(envelope),
                partition=partition,
                timestamp_ms=int(stamped.timestamp() * 1000) if stamped else None,
            )
            # The producer settles every batch within its time to live; the guard only catches a hang.
            metadata: RecordMetadata = await asyncio.wait_for(delivery, self._patience)
        except (KafkaError, TimeoutError) as err:
            raise Unacknowledged(str(err) or type(err).__name__) from err
        EVENTS_PRODUCED.labels(topic.name, envelope.type).inc()
        return metadata

    def partitions(self, topic: Topic) -> int:
        """How many partitions the topic has, by the producer's metadata (the registry's if not fetched yet)."""
        known = self.producer.client.cluster.partitions_for_topic(topic.name)
        return len(known) if known else topic.partitions
