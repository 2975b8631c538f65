"""Publishing what a portal waits for: an answer within a bound, and a 503 that means "not written".

The runtime's idempotent producer retries a batch until the broker takes it, however long the
broker is away. That is right for the outbox relay, but wrong behind an HTTP answer: a submission
that got 503 would still land once the broker returns, an application the portal was told does not
exist. This producer is acks=all without idempotence, so aiokafka drops a batch that is not
acknowledged within its time to live, and we wait for that verdict instead of guessing with our own
timeout. A retried batch may be written twice; every consumer de-duplicates by event id.

The one case left is a request the broker wrote but whose answer was lost: a portal that retries
with the same Idempotency-Key gets the same application id and event id, so it converges.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from runtime.kafka import KafkaAccess, headers_of
from runtime.metrics import EVENTS_PRODUCED

if TYPE_CHECKING:
    from schemas.envelope import Envelope
    from schemas.topics import Topic


class BrokerUnavailable(Exception):
    """The event was not acknowledged in time; the producer gave it up."""


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

    async def publish(self, topic: Topic, key: str, envelope: Envelope) -> None:
        """Return once acks=all; raise BrokerUnavailable once the producer has given the event up."""
        try:
            delivery = await self.producer.send(
                topic.name, envelope.to_bytes(), key=key.encode(), headers=headers_of(envelope)
            )
            # The producer settles every batch within its time to live; the guard only catches a hang.
            await asyncio.wait_for(delivery, self._patience)
        except (KafkaError, TimeoutError) as err:
            raise BrokerUnavailable(str(err) or type(err).__name__) from err
        EVENTS_PRODUCED.labels(topic.name, envelope.type).inc()
