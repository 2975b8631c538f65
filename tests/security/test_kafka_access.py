"""The broker lets each principal do what the registry says and nothing else.

Replayed against the real secured broker (SASL_SSL, StandardAuthorizer, ACLs from ``runtime.acls``): the
forgeries an outsider tried on the open broker, and a write by every principal to every topic it does not
own. On a PLAINTEXT broker without an authorizer every one of these writes was accepted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import ssl
import uuid

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from pydantic import SecretStr

from runtime.acls import AUDITOR, DOWNSTREAM, LOCAL_PORTALS, OPERATOR, principals, writers_of
from runtime.kafka import KafkaAccess, make_consumer, make_producer, make_reader
from schemas import events as ev
from schemas.envelope import Envelope
from schemas.topics import ALL_TOPICS, APPLICATIONS, BUDGET, DECISIONS, REVIEWS, SUBMISSIONS, Topic
from tests.support import as_principal

pytestmark = pytest.mark.integration

PORTAL = LOCAL_PORTALS[-1]
SEND_TIMEOUT = 15


async def write(kafka: KafkaAccess, topic: Topic, value: bytes, key: str = "TH-EGOV-2099-000001") -> None:
    producer = make_producer(kafka, f"security-test-{kafka.username}", delivery_timeout_ms=5_000)
    await producer.start()
    try:
        await asyncio.wait_for(producer.send_and_wait(topic.name, value, key=key.encode()), SEND_TIMEOUT)
    finally:
        await producer.stop()


async def refused_write(kafka: KafkaAccess, topic: Topic, value: bytes) -> None:
    # A principal that may write no topic at all is refused its producer id already (cluster authorization);
    # a writer of another topic gets its id and is refused on the topic.
    with pytest.raises((TopicAuthorizationFailedError, ClusterAuthorizationFailedError)):
        await write(kafka, topic, value)


def forged_withdrawal(application_id: str, portal_id: str) -> Envelope:
    event = ev.ApplicationWithdrawn(application_id=application_id, portal_id=portal_id, reason="forged")
    return Envelope.wrap(event, source="/egov/intake", subject=application_id, actor=portal_id)


def forged_review(application_id: str) -> bytes:
    """An eligible review in the wire shape budget reads; the broker must refuse it before anyone does."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/egov/review",
            "type": "application.reviewed.v1",
            "subject": application_id,
            "time": "2026-12-01T12:00:00Z",
            "correlationid": application_id,
            "data": {"application_id": application_id, "outcome": "eligible", "amount_cents": 900_000_000},
        }
    ).encode()


async def absent(kafka: KafkaAccess, topic: Topic, marker: bytes) -> bool:
    """Nothing carrying ``marker`` is on the topic (read from the beginning as the operator)."""
    reader = make_reader(kafka, "security-test-check")
    await reader.start()
    try:
        partitions = [TopicPartition(topic.name, p) for p in reader.partitions_for_topic(topic.name) or ()]
        if not partitions:
            await reader._client.force_metadata_update()
            partitions = [TopicPartition(topic.name, p) for p in reader.partitions_for_topic(topic.name) or ()]
        reader.assign(partitions)
        ends = await reader.end_offsets(partitions)
        await reader.seek_to_beginning(*partitions)
        for _ in range(50):
            positions = [await reader.position(tp) for tp in partitions]
            if all(position >= ends[tp] for position, tp in zip(positions, partitions, strict=True)):
                return True
            for records in (await reader.getmany(timeout_ms=200)).values():
                if any(marker in (r.value or b"") for r in records):
                    return False
        return True
    finally:
        await reader.stop()


async def read_refused(kafka: KafkaAccess, topic: Topic) -> bool:
    """The principal may not read the topic: it cannot even see it (no DESCRIBE), or its fetch is refused."""
    reader = make_reader(kafka, "security-test-reader")
    await reader.start()
    try:
        await reader._client.force_metadata_update()
        if reader.partitions_for_topic(topic.name) is None:
            return True  # the topic exists (the operator created it): it is hidden from this principal
        partition = TopicPartition(topic.name, 0)
        reader.assign([partition])
        await reader.seek_to_beginning(partition)
        try:
            await asyncio.wait_for(reader.getmany(partition, timeout_ms=2_000), 20)
        except TopicAuthorizationFailedError:
            return True
        return False
    finally:
        await reader.stop()


# --- who may connect ------------------------------------------------------------------------------


async def test_a_client_without_credentials_is_refused(kafka: KafkaAccess) -> None:
    """No plaintext listener, no anonymous access: neither a PLAINTEXT client nor TLS without SASL gets in."""
    for unauthenticated in (
        dataclasses.replace(kafka, security_protocol="PLAINTEXT"),
        dataclasses.replace(kafka, security_protocol="SSL"),
    ):
        producer = AIOKafkaProducer(**unauthenticated.client_options(), request_timeout_ms=3_000)
        with pytest.raises(KafkaError):
            await asyncio.wait_for(producer.start(), 20)
        await producer.stop()


async def test_a_wrong_password_is_refused(kafka: KafkaAccess) -> None:
    impostor = dataclasses.replace(as_principal(kafka, "intake"), password=SecretStr("not-the-password"))
    producer = make_producer(impostor, "security-test-impostor")
    with pytest.raises(KafkaError):
        await asyncio.wait_for(producer.start(), 20)
    await producer.stop()


async def test_the_broker_certificate_is_checked(kafka: KafkaAccess) -> None:
    """A client that trusts only the system's CAs does not accept the broker's certificate: the CA file matters."""
    untrusting = dataclasses.replace(as_principal(kafka, "intake"), ca_file=None)
    producer = make_producer(untrusting, "security-test-untrusting")
    with pytest.raises((KafkaError, ssl.SSLError)):
        await asyncio.wait_for(producer.start(), 20)
    await producer.stop()


# --- the forgeries --------------------------------------------------------------------------------


async def test_a_forged_withdrawal_cannot_be_written(kafka: KafkaAccess) -> None:
    """Only intake writes application events; a portal (or any other principal) writing a withdrawal is refused."""
    app_id = f"TH-EGOV-2099-{uuid.uuid4().int % 10**6:06d}"
    forged = forged_withdrawal(app_id, "portal-a").to_bytes()
    for principal in (PORTAL, "review", "budget", "notify", DOWNSTREAM, AUDITOR):
        await refused_write(as_principal(kafka, principal), APPLICATIONS, forged)
    assert await absent(kafka, APPLICATIONS, app_id.encode())


async def test_a_forged_review_cannot_be_written(kafka: KafkaAccess) -> None:
    """Budget reserves money on a review; only review may write one."""
    app_id = f"TH-EGOV-2099-{uuid.uuid4().int % 10**6:06d}"
    for principal in (PORTAL, "intake", "budget", "notify", DOWNSTREAM, AUDITOR):
        await refused_write(as_principal(kafka, principal), REVIEWS, forged_review(app_id))
    assert await absent(kafka, REVIEWS, app_id.encode())


async def test_intake_cannot_write_decisions(kafka: KafkaAccess) -> None:
    await refused_write(as_principal(kafka, "intake"), DECISIONS, b'{"forged": "decision"}')


async def test_review_cannot_write_budget_events(kafka: KafkaAccess) -> None:
    await refused_write(as_principal(kafka, "review"), BUDGET, b'{"forged": "reservation"}')


def not_the_writer(topic: Topic) -> list[str]:
    allowed = {*writers_of(topic, LOCAL_PORTALS), OPERATOR}
    return [p for p in principals(LOCAL_PORTALS) if p not in allowed]


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=lambda t: t.name)
async def test_only_the_writer_writes_each_topic(kafka: KafkaAccess, topic: Topic) -> None:
    """Every principal but the topic's one writer (and the operator) is refused, on every registry topic."""
    marker = f"forged-{uuid.uuid4()}".encode()
    outsiders = not_the_writer(topic)
    assert outsiders, f"{topic.name} would have no one to refuse"
    for principal in outsiders:
        await refused_write(as_principal(kafka, principal), topic, marker)
    assert await absent(kafka, topic, marker)


# --- what portals and readers may do --------------------------------------------------------------


async def test_a_portal_writes_submissions_and_reads_nothing(kafka: KafkaAccess) -> None:
    portal = as_principal(kafka, PORTAL)
    marker = f"portal-probe-{uuid.uuid4()}"
    # Not a valid submission: intake dead-letters it; the write itself is what the portal may do.
    await write(portal, SUBMISSIONS, json.dumps({"probe": marker}).encode(), key=marker)
    for topic in (SUBMISSIONS, APPLICATIONS, DECISIONS):
        assert await read_refused(portal, topic), f"a portal read {topic.name}"


async def test_downstream_reads_public_decisions_only(kafka: KafkaAccess) -> None:
    downstream = as_principal(kafka, DOWNSTREAM)
    assert not await read_refused(downstream, DECISIONS)
    assert await read_refused(downstream, APPLICATIONS)
    assert await read_refused(downstream, REVIEWS)
    await refused_write(downstream, DECISIONS, b'{"forged": "decision"}')


async def test_consumer_groups_are_confined_to_their_principal(kafka: KafkaAccess) -> None:
    """review may not join (and so rewind or steal) budget's consumer group."""
    consumer = make_consumer(as_principal(kafka, "review"), "budget-line", [APPLICATIONS], "security-test-group")
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            await asyncio.wait_for(consumer.start(), 20)
    finally:
        await consumer.stop()
