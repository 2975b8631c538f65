"""A submission on Kafka proves its portal: the four services against the real broker and database.

Anyone who can write the submissions topic can put any portal_id into a record. Only a signature by
that portal's own key (runtime.record_signatures) makes intake take it; everything else is answered
with application.rejected (portal.unauthenticated) and leaves no trace in intake's tables.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from runtime.kafka import KafkaAccess, make_producer
from runtime.record_signatures import decode_secret, encode_secret, new_secret, signature_headers
from schemas.envelope import Envelope
from schemas.events import ApplicationReceived, ApplicationRejected, SubmitApplication
from schemas.topics import APPLICATIONS, SUBMISSIONS
from services.intake.portals import add_signing_key
from tests.conftest import issue_portal_token
from tests.support import REPO, ServiceProcesses, as_principal, read_topic, sample_application

pytestmark = pytest.mark.e2e

VICTIM, OUTSIDER = "portal-victim", "portal-outsider"
PORTAL_PRINCIPAL = "portal.portal-a"
Headers = list[tuple[str, bytes]]


@pytest.fixture(scope="module")
async def intake_db(services: ServiceProcesses, service_dsns: dict[str, str]) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(service_dsns["intake"])
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def keys(intake_db: asyncpg.Connection, service_dsns: dict[str, str]) -> dict[str, bytes]:
    """Each portal registered with a token and one signing key, as ``portals issue`` leaves it."""
    issued = {}
    for portal_id in (VICTIM, OUTSIDER):
        await issue_portal_token(service_dsns["intake"], portal_id)
        issued[portal_id] = decode_secret(await add_signing_key(intake_db, portal_id, None))
    return issued


@pytest.fixture(scope="module")
async def producer(kafka: KafkaAccess) -> AsyncIterator[AIOKafkaProducer]:
    # A portal principal: it may write the submissions topic, and proves nothing about the portal_id it names.
    producer = make_producer(as_principal(kafka, PORTAL_PRINCIPAL), "test-portal")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


def submission(portal_id: str = VICTIM) -> tuple[Envelope, str]:
    """A valid submission naming ``portal_id``, for an applicant no other test uses; and that applicant."""
    application = sample_application(title=f"Signiert {uuid.uuid4().hex[:8]}")
    command = SubmitApplication(portal_id=portal_id, submission_id=f"sub-{uuid.uuid4().hex}", application=application)
    envelope = Envelope.wrap(command, source=f"/portals/{portal_id}", subject=command.submission_id, actor=portal_id)
    return envelope, application["applicant"]["ags"]


def signed(envelope: Envelope, *keys: bytes, at: float | None = None) -> tuple[bytes, Headers]:
    value = envelope.to_bytes()
    return value, signature_headers(keys, envelope.id, value, now=at)


async def publish(producer: AIOKafkaProducer, envelope: Envelope, value: bytes, headers: Headers) -> None:
    await producer.send_and_wait(SUBMISSIONS.name, value, key=envelope.subject.encode(), headers=headers)


async def answer(kafka: KafkaAccess, submission_id: str) -> Envelope:
    """Intake's one answer to a submission: its receipt or its rejection."""

    def about(e: Envelope) -> bool:
        is_answer = e.is_a(ApplicationReceived) or e.is_a(ApplicationRejected)
        return is_answer and e.data.get("submission_id") == submission_id

    seen = await read_topic(kafka, APPLICATIONS, lambda es: any(map(about, es)), timeout=60)
    answers = [e for e in seen if about(e)]
    assert len(answers) == 1, f"{submission_id}: {answers}"
    return answers[0]


async def assert_refused_and_nothing_created(
    kafka: KafkaAccess, conn: asyncpg.Connection, envelope: Envelope, ags: str
) -> None:
    reply = await answer(kafka, envelope.subject)
    assert reply.is_a(ApplicationRejected), f"taken: {reply.data}"
    rejected = reply.payload(ApplicationRejected)
    assert [p.code for p in rejected.errors] == ["portal.unauthenticated"]
    assert (rejected.portal_id, rejected.submission_id) == (envelope.data["portal_id"], envelope.subject)
    assert reply.actor is None, "an unproven record is attributed to no principal"
    assert reply.causationid == envelope.id
    # The rejection was staged in the handler's transaction, so this is the state that transaction left.
    assert await conn.fetchval("SELECT count(*) FROM submissions WHERE submission_id = $1", envelope.subject) == 0
    assert await conn.fetchval("SELECT count(*) FROM application_status WHERE applicant_ags = $1", ags) == 0
    assert await conn.fetchval("SELECT count(*) FROM pending_claims WHERE applicant_ags = $1", ags) == 0


async def assert_received(kafka: KafkaAccess, conn: asyncpg.Connection, envelope: Envelope, portal_id: str) -> None:
    reply = await answer(kafka, envelope.subject)
    assert reply.is_a(ApplicationReceived), f"refused: {reply.data}"
    assert (reply.data["portal_id"], reply.actor) == (portal_id, f"portal:{portal_id}")
    row = await conn.fetchrow("SELECT * FROM submissions WHERE submission_id = $1", envelope.subject)
    assert row is not None
    assert row["portal_id"] == portal_id


async def test_a_submission_signed_with_its_portals_key_is_received(
    kafka: KafkaAccess, producer: AIOKafkaProducer, keys: dict[str, bytes], intake_db: asyncpg.Connection
) -> None:
    envelope, _ = submission(VICTIM)
    await publish(producer, envelope, *signed(envelope, keys[VICTIM]))
    await assert_received(kafka, intake_db, envelope, VICTIM)

    # The signature covers the bytes as sent, however the portal's serialiser lays them out.
    envelope, _ = submission(VICTIM)
    value = json.dumps(dict(reversed(envelope.model_dump(mode="json").items())), indent=2).encode()
    await publish(producer, envelope, value, signature_headers([keys[VICTIM]], envelope.id, value))
    await assert_received(kafka, intake_db, envelope, VICTIM)


@pytest.mark.parametrize("forger", ["another portal's own key", "a key of its own"])
async def test_a_forged_submission_naming_another_portal_is_refused_and_creates_nothing(
    kafka: KafkaAccess,
    producer: AIOKafkaProducer,
    keys: dict[str, bytes],
    intake_db: asyncpg.Connection,
    forger: str,
) -> None:
    key = keys[OUTSIDER] if forger == "another portal's own key" else decode_secret(new_secret())
    envelope, ags = submission(VICTIM)  # the outsider names the victim portal
    await publish(producer, envelope, *signed(envelope, key))
    await assert_refused_and_nothing_created(kafka, intake_db, envelope, ags)


async def test_an_unsigned_submission_is_refused_and_creates_nothing(
    kafka: KafkaAccess, producer: AIOKafkaProducer, keys: dict[str, bytes], intake_db: asyncpg.Connection
) -> None:
    envelope, ags = submission(VICTIM)
    await publish(producer, envelope, envelope.to_bytes(), [])
    await assert_refused_and_nothing_created(kafka, intake_db, envelope, ags)


@pytest.mark.parametrize("offset", [-3600, -301, 301, 3600], ids=["an-hour-old", "just-stale", "just-ahead", "ahead"])
async def test_a_signature_outside_the_tolerance_window_is_refused(
    kafka: KafkaAccess,
    producer: AIOKafkaProducer,
    keys: dict[str, bytes],
    intake_db: asyncpg.Connection,
    offset: int,
) -> None:
    envelope, ags = submission(VICTIM)
    await publish(producer, envelope, *signed(envelope, keys[VICTIM], at=time.time() + offset))
    await assert_refused_and_nothing_created(kafka, intake_db, envelope, ags)


async def test_a_tampered_value_under_a_valid_looking_signature_is_refused(
    kafka: KafkaAccess, producer: AIOKafkaProducer, keys: dict[str, bytes], intake_db: asyncpg.Connection
) -> None:
    # Changed in flight: the portal signed one amount, the record asks for another.
    envelope, ags = submission(VICTIM)
    value, headers = signed(envelope, keys[VICTIM])
    raw: dict[str, Any] = json.loads(value)
    raw["data"]["application"]["project"]["requested_amount_cents"] += 100_000
    tampered = json.dumps(raw, separators=(",", ":")).encode()
    await publish(producer, envelope, tampered, headers)
    await assert_refused_and_nothing_created(kafka, intake_db, envelope, ags)

    # An accepted record's signature, lifted onto a new record.
    accepted, _ = submission(VICTIM)
    _, old_headers = signed(accepted, keys[VICTIM])
    await publish(producer, accepted, *signed(accepted, keys[VICTIM]))
    await assert_received(kafka, intake_db, accepted, VICTIM)
    forged, forged_ags = submission(VICTIM)
    await publish(producer, forged, forged.to_bytes(), old_headers)
    await assert_refused_and_nothing_created(kafka, intake_db, forged, forged_ags)


async def test_during_a_rotation_both_keys_verify_and_a_retired_key_no_longer_does(
    kafka: KafkaAccess, producer: AIOKafkaProducer, intake_db: asyncpg.Connection, service_dsns: dict[str, str]
) -> None:
    portal_id = "portal-rotating"
    await issue_portal_token(service_dsns["intake"], portal_id)
    old = decode_secret(await add_signing_key(intake_db, portal_id, None))
    new = decode_secret(await add_signing_key(intake_db, portal_id, timedelta(hours=1)))
    for key_set in ((old,), (new,), (old, new)):
        envelope, _ = submission(portal_id)
        await publish(producer, envelope, *signed(envelope, *key_set))
        await assert_received(kafka, intake_db, envelope, portal_id)

    await intake_db.execute(  # what `rotate-signing-key --retire-old` does
        "UPDATE portal_signing_keys SET retire_at = now() WHERE portal_id = $1 AND secret = $2", portal_id, old
    )
    envelope, ags = submission(portal_id)
    await publish(producer, envelope, *signed(envelope, old))
    await assert_refused_and_nothing_created(kafka, intake_db, envelope, ags)
    envelope, _ = submission(portal_id)
    await publish(producer, envelope, *signed(envelope, new))
    await assert_received(kafka, intake_db, envelope, portal_id)


async def test_the_example_portal_producer_signs_what_intake_takes(
    kafka: KafkaAccess, keys: dict[str, bytes], intake_db: asyncpg.Connection, tmp_path: Path
) -> None:
    application = tmp_path / "application.json"
    application.write_text(json.dumps(sample_application()), encoding="utf-8")
    submission_id = f"sub-{uuid.uuid4().hex}"
    secret = encode_secret(keys[VICTIM])
    portal = as_principal(kafka, PORTAL_PRINCIPAL)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "examples/portal_producer.py",
        *("--bootstrap", kafka.bootstrap, "--username", portal.username, "--ca-file", str(portal.ca_file)),
        *("--portal-id", VICTIM, "--submission-id", submission_id, str(application)),
        cwd=REPO,
        env={
            **os.environ,
            "EGOV_PORTAL_SIGNING_SECRET": secret,
            "EGOV_KAFKA_PASSWORD": portal.password.get_secret_value(),
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert secret not in out.decode() + err.decode(), "the example never prints the secret"
    reply = await answer(kafka, submission_id)
    assert reply.is_a(ApplicationReceived), reply.data
    assert reply.data["portal_id"] == VICTIM
