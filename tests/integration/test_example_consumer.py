"""The example downstream consumer runs against the real broker and prints the decisions it reads,
with the verdict on each signature."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runtime.kafka import KafkaAccess, make_producer, publish
from runtime.signing import load_signer, public_key_path
from schemas.application import FundingYear
from schemas.envelope import Envelope
from schemas.events import ApplicationDecided, Decision
from schemas.topics import DECISIONS
from tests.support import REPO, as_principal, private_broker

pytestmark = pytest.mark.integration

RECEIVED = datetime(2027, 1, 15, 9, 30, tzinfo=UTC)


def decision(application_id: str, decision: Decision, amount: int) -> Envelope:
    decided = ApplicationDecided(
        application_id=application_id,
        decision=decision,
        amount_cents=amount,
        funding=[FundingYear(fiscal_year=2027, amount_cents=amount)] if amount else [],
        reasons=[] if amount else ["R05-grant-limits"],
        rules_version="egov-2024-v1",
        received_at=RECEIVED,
        decided_at=datetime.now(UTC),
    )
    return Envelope.wrap(decided, source="/egov/budget", subject=application_id, actor="budget")


async def run_consumer(kafka: KafkaAccess, public_key: Path) -> tuple[int, str, str]:
    """The example as a downstream system runs it: as the read-only downstream principal."""
    downstream = as_principal(kafka, "downstream")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "examples/decision_consumer.py",
        "--bootstrap",
        kafka.bootstrap,
        "--username",
        downstream.username,
        "--ca-file",
        str(downstream.ca_file),
        "--group-id",
        f"downstream-example-consumer-{uuid.uuid4()}",
        "--from-beginning",
        "--public-key",
        str(public_key),
        "--exit-when-idle",
        "4",
        cwd=REPO,
        env={**os.environ, "EGOV_KAFKA_PASSWORD": downstream.password.get_secret_value()},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def own_broker() -> AsyncIterator[KafkaAccess]:
    """The decisions here are hand-made (no review behind them): keep them out of the shared log."""
    async with private_broker("example-consumer", 1) as kafka:
        yield kafka


async def test_the_example_consumer_prints_validated_decisions_and_checks_signatures(
    own_broker: KafkaAccess, tmp_path: Path
) -> None:
    signer = load_signer(tmp_path / "keys" / "decision-signing.pem", create_if_missing=True)
    serial = random.randrange(10**6)
    ids = [f"TH-EGOV-2099-{serial:06d}{n}" for n in range(3)]
    approved = signer.sign(decision(ids[0], Decision.APPROVED, 9_600_000))
    rejected = decision(ids[1], Decision.REJECTED, 0)  # not signed
    signed = signer.sign(decision(ids[2], Decision.APPROVED, 100_000))
    forged = signed.model_copy(update={"data": {**signed.data, "amount_cents": 900_000_000}})
    producer = make_producer(own_broker, "example-consumer-test")
    await producer.start()
    try:
        for envelope in (approved, rejected, forged, approved):  # the last one is a redelivery
            await publish(producer, DECISIONS, envelope.subject, envelope)
    finally:
        await producer.stop()

    code, out, err = await run_consumer(own_broker, public_key_path(tmp_path / "keys" / "decision-signing.pem"))

    assert code == 0, err
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("DECISION ")}
    assert f"DECISION {ids[0]} approved 96,000.00 EUR years=2027:9600000 reasons=- " in lines[ids[0]]
    assert lines[ids[0]].endswith(f"signature=valid id={approved.id}")
    assert f"{ids[1]} rejected 0.00 EUR years=- reasons=R05-grant-limits" in lines[ids[1]]
    assert "signature=unsigned" in lines[ids[1]]
    assert "9,000,000.00 EUR" in lines[ids[2]]
    assert "signature=invalid" in lines[ids[2]]
    assert sum(approved.id in line for line in out.splitlines()) == 1, "a redelivery is printed once"
