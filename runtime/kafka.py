"""Kafka plumbing: an idempotent acks=all producer, manual-commit consumers, topics from the registry."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from schemas.envelope import Envelope
from schemas.topics import Topic

log = logging.getLogger(__name__)


def make_producer(bootstrap: str, client_id: str, *, delivery_timeout_ms: int = 30_000) -> AIOKafkaProducer:
    """Idempotent, acks=all. A send either lands within ``delivery_timeout_ms`` or fails."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        request_timeout_ms=delivery_timeout_ms,
        retry_backoff_ms=200,
    )


def make_consumer(
    bootstrap: str,
    group_id: str,
    topics: list[Topic],
    client_id: str,
    *,
    session_timeout_ms: int = 15_000,
    offset_reset: str = "earliest",
) -> AIOKafkaConsumer:
    """Offsets are committed by the caller, only after the work they cover is durable."""
    return AIOKafkaConsumer(
        *[t.name for t in topics],
        bootstrap_servers=bootstrap,
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset=offset_reset,
        max_poll_records=500,
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=min(3_000, session_timeout_ms // 3),
        metadata_max_age_ms=30_000,
    )


def headers_of(envelope: Envelope) -> list[tuple[str, bytes]]:
    """CloudEvents binary-mode hints, so a consumer can route without decoding the body."""
    return [("ce_type", envelope.type.encode()), ("ce_id", envelope.id.encode())]


async def publish(producer: AIOKafkaProducer, topic: Topic, key: str, envelope: Envelope) -> None:
    """Send and wait for the broker's acknowledgement (acks=all)."""
    await producer.send_and_wait(topic.name, envelope.to_bytes(), key=key.encode(), headers=headers_of(envelope))


async def ensure_topics(bootstrap: str, topics: tuple[Topic, ...]) -> list[str]:
    """Create missing topics with partitions and retention from the registry; returns those created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="egov-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if missing:
            new = [NewTopic(t.name, t.partitions, 1, topic_configs=t.config) for t in missing]
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                log.info("topics created concurrently by another process")
        return [t.name for t in missing]
    finally:
        await admin.close()
