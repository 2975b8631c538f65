"""Kafka plumbing: who connects and how, an idempotent acks=all producer, manual-commit consumers,
topics from the registry.

Every client in the project is built here from a ``KafkaAccess``, so none can forget to authenticate.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from pydantic import SecretStr

from runtime.tracing import TRACEPARENT, current_traceparent

if TYPE_CHECKING:
    from pathlib import Path

    from schemas.envelope import Envelope
    from schemas.topics import Topic

log = logging.getLogger(__name__)

SecurityProtocol = Literal["SASL_SSL", "SSL", "SASL_PLAINTEXT", "PLAINTEXT"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


@dataclass(frozen=True)
class KafkaAccess:
    """One principal's way onto the broker: where, as whom, and which CA vouches for the broker."""

    bootstrap: str
    username: str = ""
    password: SecretStr = SecretStr("")  # noqa: RUF009 - immutable
    security_protocol: SecurityProtocol = "SASL_SSL"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    ca_file: Path | None = None
    tls_verify: bool = True

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SASL_SSL", "SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def tls_context(self) -> ssl.SSLContext:
        """TLS 1.2+, the broker's certificate checked against ``ca_file`` (or the system's CAs)."""
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if not self.tls_verify:
            # Only reachable outside production (the settings refuse it there).
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def client_options(self) -> dict[str, Any]:
        """The keyword arguments every aiokafka client takes to connect as this principal."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.security_protocol}
        if self.uses_tls:
            options["ssl_context"] = self.tls_context()
        if self.uses_sasl:
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password.get_secret_value(),
            }
        return options

    def env(self, prefix: str) -> dict[str, str]:
        """The same access as environment settings for a process with this prefix (``INTAKE_``)."""
        values = {
            "KAFKA_BOOTSTRAP": self.bootstrap,
            "KAFKA_SECURITY_PROTOCOL": self.security_protocol,
            "KAFKA_SASL_MECHANISM": self.sasl_mechanism,
            "KAFKA_USERNAME": self.username,
            "KAFKA_PASSWORD": self.password.get_secret_value(),
            "KAFKA_TLS_VERIFY": str(self.tls_verify).lower(),
        }
        if self.ca_file:
            values["KAFKA_CA_FILE"] = str(self.ca_file)
        return {prefix + name: value for name, value in values.items()}


def make_producer(kafka: KafkaAccess, client_id: str, *, delivery_timeout_ms: int = 30_000) -> AIOKafkaProducer:
    """Idempotent, acks=all. A send either lands within ``delivery_timeout_ms`` or fails."""
    return AIOKafkaProducer(
        **kafka.client_options(),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        request_timeout_ms=delivery_timeout_ms,
        retry_backoff_ms=200,
    )


def make_consumer(
    kafka: KafkaAccess,
    group_id: str | None,
    topics: list[Topic],
    client_id: str,
    *,
    session_timeout_ms: int = 15_000,
    offset_reset: str = "earliest",
) -> AIOKafkaConsumer:
    """Offsets are committed by the caller, only after the work they cover is durable."""
    return AIOKafkaConsumer(
        *[t.name for t in topics],
        **kafka.client_options(),
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset=offset_reset,
        max_poll_records=500,
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=min(3_000, session_timeout_ms // 3),
        metadata_max_age_ms=30_000,
    )


async def stop_within(client: AIOKafkaConsumer | AIOKafkaProducer, seconds: float = 5.0) -> None:
    """Stop a client; if its TLS connections have not closed after ``seconds``, abort them.

    A broker reads nothing more from a connection while one of its requests is in flight, and a
    JoinGroup is held until the rebalance ends. Over TLS, closing means a close_notify exchange the
    broker then does not answer, so a stop during a rebalance would wait out the whole rebalance.
    Aborting is safe here: the group is left and the offsets are committed before connections close.
    """
    connections = list(client._client._conns.values())
    transports = [c._writer.transport for c in connections if c._writer is not None]
    stopping = asyncio.ensure_future(client.stop())
    done, _ = await asyncio.wait({stopping}, timeout=seconds)
    if not done:
        log.warning("kafka connections did not close in %.0fs; aborting them", seconds)
        for transport in transports:
            transport.abort()
    await stopping


def consumer_group(service: str, prefix: str, name: str) -> str:
    """``<service>-<prefix><name>``: a service's groups share its name as prefix, which its group ACL grants."""
    return f"{service}-{prefix}{name}"


# CloudEvents Kafka protocol binding, structured content mode: the record value is the whole envelope
# in the JSON event format, and this header says so. Binary mode would move the attributes into headers
# and leave only ``data`` as the value, which every consumer (and every record already written) reads
# differently; structured mode is what the topics always carried, now declared.
CONTENT_TYPE = "content-type"
STRUCTURED_JSON = b"application/cloudevents+json; charset=UTF-8"


def event_headers(event_type: str, event_id: str, traceparent: str | None = None) -> list[tuple[str, bytes]]:
    """The headers every event record carries: the content mode, ``ce_type``/``ce_id`` so a consumer can
    route without decoding the value, and the W3C ``traceparent`` of the span that caused the event."""
    headers = [(CONTENT_TYPE, STRUCTURED_JSON), ("ce_type", event_type.encode()), ("ce_id", event_id.encode())]
    return headers if traceparent is None else [*headers, (TRACEPARENT, traceparent.encode())]


def headers_of(envelope: Envelope) -> list[tuple[str, bytes]]:
    """The headers of an event published now, in the current span's trace."""
    return event_headers(envelope.type, envelope.id, current_traceparent())


async def publish(producer: AIOKafkaProducer, topic: Topic, key: str, envelope: Envelope) -> None:
    """Send and wait for the broker's acknowledgement (acks=all)."""
    await producer.send_and_wait(topic.name, envelope.to_bytes(), key=key.encode(), headers=headers_of(envelope))


def make_reader(kafka: KafkaAccess, client_id: str) -> AIOKafkaConsumer:
    """A consumer without a group, for tools that assign partitions and read from the beginning."""
    # earliest: with "latest", the reset on assignment can race a seek and start at the end.
    return AIOKafkaConsumer(
        **kafka.client_options(),
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


def make_admin(kafka: KafkaAccess, client_id: str) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**kafka.client_options(), client_id=client_id)


@dataclass(frozen=True)
class Replication:
    """How many copies of every topic the cluster keeps, and how many must have a write before acks=all."""

    factor: int = 1
    min_insync: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.min_insync <= self.factor:
            raise ValueError(f"min.insync.replicas {self.min_insync} must be between 1 and the factor {self.factor}")


async def ensure_topics(
    kafka: KafkaAccess, topics: tuple[Topic, ...], replication: Replication | None = None
) -> list[str]:
    """Create missing topics with partitions, retention and replication from the registry; returns those created."""
    replication = replication or Replication()
    admin = make_admin(kafka, "egov-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if missing:
            new = [
                NewTopic(
                    t.name,
                    t.partitions,
                    replication.factor,
                    topic_configs=t.config | {"min.insync.replicas": str(replication.min_insync)},
                )
                for t in missing
            ]
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                log.info("topics created concurrently by another process")
        return [t.name for t in missing]
    finally:
        await admin.close()
