"""A submission the broker did not acknowledge because it was paused (SIGSTOP) but wrote after all.

The first answer must not claim that nothing was accepted: it says the outcome is unknown. A retry
with the same Idempotency-Key returns the real outcome, and the submission makes one application
with one decision, however the broker's late write and the retry cross.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import httpx
import pytest

from runtime.kafka import KafkaAccess
from schemas.envelope import Envelope
from schemas.events import ApplicationReceived, ApplicationWithdrawn
from schemas.topics import APPLICATIONS, DECISIONS
from tests.support import (
    REPO,
    TEST_SLOT,
    intake_url,
    open_fiscal_year,
    read_topic,
    sample_application,
    upload_attachments,
)

pytestmark = pytest.mark.e2e

# Where deploy/kafka.sh keeps the pid of the slot's broker (deploy/test.sh: EGOV_STATE_DIR=.state/test<N>).
BROKER_PIDFILE = REPO / ".state" / f"test{TEST_SLOT}" / "kafka" / "kafka.pid"


def broker_pid() -> int:
    """The pid file holds the pid and its start time (so a reused pid is not taken for the broker)."""
    return int(BROKER_PIDFILE.read_text().split()[0])


def titled(title: str, envelope: Envelope) -> bool:
    return envelope.is_a(ApplicationReceived) and envelope.data["application"]["project"]["title"] == title


async def test_a_submission_unacknowledged_while_the_broker_is_paused_makes_one_application_and_one_decision(
    services: object, portal_token: str, kafka: KafkaAccess
) -> None:
    await open_fiscal_year(2027, 1_000_000_000)
    title = f"Broker pausiert {uuid.uuid4().hex[:12]}"
    application = sample_application(title=title)
    headers = {"Authorization": f"Bearer {portal_token}", "Idempotency-Key": str(uuid.uuid4())}
    broker = broker_pid()
    async with httpx.AsyncClient(timeout=30) as http:
        os.kill(broker, signal.SIGSTOP)
        try:
            unknown = await http.post(intake_url("/v1/applications"), json=application, headers=headers)
        finally:
            os.kill(broker, signal.SIGCONT)
        assert unknown.status_code == 503, unknown.text
        assert unknown.headers["content-type"].startswith("application/problem+json")
        problem = unknown.json()
        assert problem["code"] == "broker.outcome_unknown", "not 'nothing was accepted': it may have been"
        assert "Idempotency-Key" in problem["detail"]
        assert int(unknown.headers["retry-after"]) > 0
        app_id = problem["application_id"]

        deadline = time.monotonic() + 90
        while (
            retried := await http.post(intake_url("/v1/applications"), json=application, headers=headers)
        ).status_code != 202:
            assert retried.status_code == 503, retried.text
            assert time.monotonic() < deadline, "the retry never settled"
            await asyncio.sleep(1)
        again = await http.post(intake_url("/v1/applications"), json=application, headers=headers)
    assert retried.json()["application_id"] == app_id, "the retry answers with the application the first one made"
    assert again.json() == retried.json(), "and from then on the same answer"
    await upload_attachments(app_id, application, portal_token)

    await read_topic(kafka, DECISIONS, lambda es: any(e.subject == app_id for e in es), timeout=90)
    await asyncio.sleep(3)  # a late copy of the first publish, or a second decision, would show by now
    received = [e for e in await read_topic(kafka, APPLICATIONS, lambda _: False, timeout=3) if titled(title, e)]
    assert {e.subject for e in received} == {app_id}, "one submission, one application"
    assert len({e.id for e in received}) == 1, "every copy on the log is the same event"
    assert len({e.to_bytes() for e in received}) == 1
    decided = [e for e in await read_topic(kafka, DECISIONS, lambda _: False, timeout=3) if e.subject == app_id]
    assert len({e.id for e in decided}) == 1, "exactly one decision"


def withdrawn(app_id: str, envelope: Envelope) -> bool:
    return envelope.is_a(ApplicationWithdrawn) and envelope.subject == app_id


async def test_a_withdrawal_unacknowledged_while_the_broker_is_paused_and_retried_is_one_event(
    services: object, portal_token: str, kafka: KafkaAccess
) -> None:
    """Found by make faults CLUSTER=3: the retry published the same event id with a later time."""
    # A year nobody opened: the application waits in line, so it is still there to withdraw.
    application = sample_application(funding=[{"fiscal_year": 2031, "amount_cents": 9_600_000}])
    auth = {"Authorization": f"Bearer {portal_token}"}
    async with httpx.AsyncClient(timeout=30) as http:
        accepted = await http.post(intake_url("/v1/applications"), json=application, headers=auth)
        assert accepted.status_code == 202, accepted.text
        app_id = accepted.json()["application_id"]
        withdrawal = intake_url(f"/v1/applications/{app_id}/withdrawal")
        broker = broker_pid()
        os.kill(broker, signal.SIGSTOP)
        try:
            unknown = await http.post(withdrawal, headers=auth)
        finally:
            os.kill(broker, signal.SIGCONT)
        assert unknown.status_code == 503, unknown.text
        assert unknown.json()["code"] == "broker.outcome_unknown"
        await asyncio.sleep(2)  # so a fresh time on the retry would differ
        deadline = time.monotonic() + 90
        while (retried := await http.post(withdrawal, headers=auth)).status_code not in (202, 409):
            assert retried.status_code == 503, retried.text
            assert time.monotonic() < deadline, "the retry never settled"
            await asyncio.sleep(1)
    copies = await read_topic(kafka, APPLICATIONS, lambda es: any(withdrawn(app_id, e) for e in es), timeout=60)
    await asyncio.sleep(3)  # the broker's late copy of the first attempt, if it is coming
    copies = [e for e in await read_topic(kafka, APPLICATIONS, lambda _: False, timeout=3) if withdrawn(app_id, e)]
    assert copies, "the withdrawal is on the log"
    assert len({e.to_bytes() for e in copies}) == 1, "every copy of the withdrawal is the same event, time included"
