"""Review through the real services, broker and database: automatic outcomes, the caseworker queue,
four eyes, and redelivery of a received event."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from runtime.kafka import KafkaAccess, make_producer, publish
from schemas.application import FundingApplication
from schemas.envelope import Envelope
from schemas.events import (
    ApplicationCompleted,
    ApplicationDecided,
    ApplicationReceived,
    ApplicationReviewed,
    Decision,
    DocumentsRequested,
    ReviewOutcome,
    ReviewProposed,
)
from schemas.topics import APPLICATIONS, DECISIONS, REVIEWS
from tests.support import (
    REPO,
    SERVICE_PORTS,
    ServiceProcesses,
    as_intake_writes,
    open_fiscal_year,
    read_topic,
    sample_application,
)

pytestmark = pytest.mark.e2e

YEAR = 2027
V1 = "egov-2024-v1"
OUTCOMES = ("eligible", "ineligible", "needs_manual_review")
EARLY_START = {"planned_start": "2027-02-01", "reason": "Der Rahmenvertrag des Landkreises läuft Ende Januar aus."}


def review_url(path: str) -> str:
    return f"http://127.0.0.1:{SERVICE_PORTS['review']}{path}"


def issue_caseworker(review_dsn: str, caseworker_id: str, command: str = "issue") -> str:
    """The CLI an operator uses; it prints the token once."""
    env = {**os.environ, "REVIEW_DATABASE_URL": review_dsn}
    done = subprocess.run(
        [sys.executable, "-m", "services.review.caseworkers", command, caseworker_id],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.strip()


def amounts(requested: int, rate_percent: int = 80) -> dict[str, Any]:
    eligible = -(-requested * 100 // rate_percent)
    return {
        "requested_amount_cents": requested,
        "eligible_cost_cents": eligible,
        "total_cost_cents": eligible,
        "funding": [{"fiscal_year": YEAR, "amount_cents": requested}],
    }


async def receive(kafka: KafkaAccess, application: dict[str, Any], app_id: str | None = None) -> str:
    """Publish an ``application.received`` as intake would: the review service's input, nothing else."""
    app_id = app_id or f"TH-EGOV-{YEAR}-8{uuid.uuid4().int % 10**6:06d}"
    received = ApplicationReceived(
        application_id=app_id,
        portal_id="portal-a",
        received_at=datetime.now(UTC),
        category_open=True,
        application=FundingApplication.model_validate(application),
    )
    producer = make_producer(kafka, "test-review-input")
    await producer.start()
    try:
        for envelope in as_intake_writes(received):  # its attachments arrived at once: complete
            await publish(producer, APPLICATIONS, app_id, envelope)
    finally:
        await producer.stop()
    return app_id


def of_type(app_id: str, event_class: type[Any]) -> Callable[[list[Envelope]], list[Envelope]]:
    return lambda seen: [e for e in seen if e.subject == app_id and e.is_a(event_class)]


async def events_about(
    kafka: KafkaAccess, topic: Any, app_id: str, event_class: type[Any], count: int = 1, timeout: float = 30
) -> list[Envelope]:
    select = of_type(app_id, event_class)
    return select(await read_topic(kafka, topic, lambda seen: len(select(seen)) >= count, timeout))


async def reviewed(kafka: KafkaAccess, app_id: str, count: int = 1) -> list[ApplicationReviewed]:
    found = await events_about(kafka, REVIEWS, app_id, ApplicationReviewed, count)
    assert len(found) >= count, f"{app_id}: {len(found)} review results, expected {count}"
    return [e.payload(ApplicationReviewed) for e in found]


class Caseworker:
    def __init__(self, token: str | None) -> None:
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def get(self, path: str, **params: Any) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as http:
            return await http.get(review_url(path), headers=self.headers, params=params)

    async def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as http:
            return await http.post(review_url(path), headers=self.headers, json=body or {})


@pytest.fixture(scope="module")
async def anna(services: ServiceProcesses, service_dsns: dict[str, str]) -> Caseworker:
    return Caseworker(issue_caseworker(service_dsns["review"], "sb-anna"))


@pytest.fixture(scope="module")
async def bernd(services: ServiceProcesses, service_dsns: dict[str, str]) -> Caseworker:
    return Caseworker(issue_caseworker(service_dsns["review"], "sb-bernd"))


@pytest.fixture(scope="module")
async def budget_open(services: ServiceProcesses) -> None:
    await open_fiscal_year(YEAR, 1_000_000_000)


async def decision_of(kafka: KafkaAccess, app_id: str) -> ApplicationDecided:
    found = await events_about(kafka, DECISIONS, app_id, ApplicationDecided)
    assert len(found) == 1, f"{app_id}: {len(found)} decisions"
    return found[0].payload(ApplicationDecided)


async def test_eligible_ineligible_and_manual_cases_each_get_their_review(
    services: ServiceProcesses, kafka: KafkaAccess, anna: Caseworker
) -> None:
    automatic = 'reviewer="automatic"'  # before and after alike: caseworkers' decisions count apart
    counted_before = {o: await review_metric("egov_reviews_total", f'outcome="{o}"', automatic) for o in OUTCOMES}
    eligible = await receive(kafka, sample_application())
    ineligible = await receive(kafka, sample_application(**amounts(9_600_000, rate_percent=100)))
    manual = await receive(kafka, {**sample_application(), "early_start": EARLY_START})

    [ok] = await reviewed(kafka, eligible)
    assert (ok.outcome, ok.rules_version, ok.reviewer) == (ReviewOutcome.ELIGIBLE, V1, "automatic")
    assert [f.rule_id[:3] for f in ok.findings] == [f"R0{i}" for i in range(1, 10)]
    assert all(f.passed and not f.needs_person for f in ok.findings)

    [no] = await reviewed(kafka, ineligible)
    assert (no.outcome, no.rules_version) == (ReviewOutcome.INELIGIBLE, V1)
    failed = [f for f in no.findings if not f.passed]
    assert [f.rule_id for f in failed] == ["R04-financing"]
    assert "höchstens 7680000 Cent" in failed[0].message_de
    assert "at most 7680000 cents" in failed[0].message_en

    [person] = await reviewed(kafka, manual)
    assert (person.outcome, person.rules_version) == (ReviewOutcome.NEEDS_MANUAL_REVIEW, V1)
    assert [f.rule_id for f in person.findings if f.needs_person] == ["R06-not-started"]
    assert all(f.passed for f in person.findings)

    for outcome, before in counted_before.items():
        assert await review_metric("egov_reviews_total", f'outcome="{outcome}"', 'reviewer="automatic"') >= before + 1
    listed = (await anna.get("/v1/cases")).json()["cases"]
    assert manual in [c["application_id"] for c in listed]
    assert eligible not in [c["application_id"] for c in listed]
    received = [c["received_at"] for c in listed]
    assert received == sorted(received), "oldest first"


async def test_a_caseworker_decision_moves_the_case_on_to_the_budget(
    services: ServiceProcesses, kafka: KafkaAccess, anna: Caseworker, budget_open: None
) -> None:
    app_id = await receive(kafka, {**sample_application(), "early_start": EARLY_START})
    [automatic] = await reviewed(kafka, app_id)

    case = (await anna.get(f"/v1/cases/{app_id}")).json()
    assert case["status"] == "open"
    assert case["early_start_requested"]
    assert not case["four_eyes"]
    assert [f["rule_id"] for f in case["findings"]] == [f.rule_id for f in automatic.findings]
    assert case["application"]["project"]["requested_amount_cents"] == 9_600_000

    justification = "Kostenplan plausibel, Fördergegenstand 2c erfüllt."
    undecided = await anna.post(f"/v1/cases/{app_id}/decision", {"outcome": "eligible", "justification": justification})
    assert undecided.status_code == 422
    assert undecided.json()["code"] == "case.early_start_undecided"

    before = datetime.now(UTC)
    done = await anna.post(
        f"/v1/cases/{app_id}/decision",
        {"outcome": "eligible", "justification": justification, "early_start_permitted": True},
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "decided"

    envelopes = await events_about(kafka, REVIEWS, app_id, ApplicationReviewed, count=2)
    final_envelope = envelopes[1]
    final = final_envelope.payload(ApplicationReviewed)
    assert (final.outcome, final.reviewer, final.rules_version) == (ReviewOutcome.ELIGIBLE, "sb-anna", V1)
    assert final_envelope.actor == "sb-anna"
    assert final_envelope.causationid == envelopes[0].id, "the decision follows the automatic review"
    assert final_envelope.id == done.json()["event_id"]
    assert final.ready_at >= before
    added = {f.rule_id: f for f in final.findings[len(automatic.findings) :]}
    assert justification in added["C01-caseworker-decision"].message_de
    assert "keine Förderzusage" in added["C02-early-start"].message_de

    decision = await decision_of(kafka, app_id)
    assert decision.decision is Decision.APPROVED
    assert decision.rules_version == V1
    assert app_id not in [c["application_id"] for c in (await anna.get("/v1/cases")).json()["cases"]]
    again = await anna.post(f"/v1/cases/{app_id}/decision", {"outcome": "ineligible", "justification": justification})
    assert again.status_code == 409
    assert again.json()["code"] == "case.already_decided"


async def test_four_eyes_needs_a_second_different_caseworker(
    services: ServiceProcesses,
    kafka: KafkaAccess,
    anna: Caseworker,
    bernd: Caseworker,
    budget_open: None,
) -> None:
    app_id = await receive(kafka, sample_application(**amounts(25_000_000)))
    [automatic] = await reviewed(kafka, app_id)
    assert automatic.outcome is ReviewOutcome.NEEDS_MANUAL_REVIEW
    assert [f.rule_id for f in automatic.findings if f.needs_person] == ["R09-four-eyes"]

    justification = "Gemeinsames Rechenzentrum dreier Kommunen, Wirtschaftlichkeit belegt."
    proposed = await anna.post(f"/v1/cases/{app_id}/decision", {"outcome": "eligible", "justification": justification})
    assert proposed.status_code == 200, proposed.text
    assert proposed.json()["status"] == "proposed"
    [proposal] = await events_about(kafka, REVIEWS, app_id, ReviewProposed)
    assert proposal.actor == "sb-anna"
    assert proposal.payload(ReviewProposed).proposed_by == "sb-anna"
    assert proposal.payload(ReviewProposed).rules_version == V1
    queued = {c["application_id"]: c for c in (await bernd.get("/v1/cases")).json()["cases"]}
    assert queued[app_id]["status"] == "proposed"
    assert queued[app_id]["proposed_by"] == "sb-anna"

    own = await anna.post(f"/v1/cases/{app_id}/confirmation")
    assert own.status_code == 403
    assert own.headers["content-type"] == "application/problem+json"
    assert own.json()["code"] == "review.four_eyes_same_caseworker"

    confirmed = await bernd.post(f"/v1/cases/{app_id}/confirmation")
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "decided"
    envelopes = await events_about(kafka, REVIEWS, app_id, ApplicationReviewed, count=2)
    assert len(envelopes) == 2, "only the automatic review and the confirmed decision, no review for the proposal"
    final = envelopes[1].payload(ApplicationReviewed)
    assert (final.outcome, final.reviewer, envelopes[1].actor) == (ReviewOutcome.ELIGIBLE, "sb-bernd", "sb-bernd")
    assert envelopes[1].causationid == proposal.id
    four_eyes = next(f for f in final.findings if f.rule_id == "C03-four-eyes-confirmed")
    assert "sb-anna" in four_eyes.message_en
    assert "sb-bernd" in four_eyes.message_en

    decision = await decision_of(kafka, app_id)
    assert (decision.decision, decision.amount_cents) == (Decision.APPROVED, 25_000_000)
    history = (await bernd.get(f"/v1/cases/{app_id}")).json()["history"]
    assert [(h["action"], h["caseworker"]) for h in history] == [("proposed", "sb-anna"), ("confirmed", "sb-bernd")]


async def test_documents_requested_then_ineligible_becomes_a_rejection(
    services: ServiceProcesses, kafka: KafkaAccess, anna: Caseworker, budget_open: None
) -> None:
    app_id = await receive(kafka, {**sample_application(), "early_start": EARLY_START})
    await reviewed(kafka, app_id)

    asked = await anna.post(
        f"/v1/cases/{app_id}/document-requests", {"documents": ["security_concept"], "note": "Bitte mit Datum."}
    )
    assert asked.status_code == 200, asked.text
    assert asked.json()["status"] == "waiting_documents"
    [request] = await events_about(kafka, REVIEWS, app_id, DocumentsRequested)
    payload = request.payload(DocumentsRequested)
    assert (request.actor, payload.requested_by, payload.documents) == ("sb-anna", "sb-anna", ["security_concept"])
    assert "security_concept" in payload.message_de
    assert "Bitte mit Datum." in payload.message_de
    assert app_id not in [c["application_id"] for c in (await anna.get("/v1/cases")).json()["cases"]]
    waiting = (await anna.get("/v1/cases", status="waiting_documents")).json()["cases"]
    assert app_id in [c["application_id"] for c in waiting]

    justification = "Das Vorhaben hat bereits begonnen; der Vertrag wurde vor Antragstellung unterschrieben."
    done = await anna.post(
        f"/v1/cases/{app_id}/decision",
        {"outcome": "ineligible", "justification": justification, "early_start_permitted": False},
    )
    assert done.status_code == 200, done.text
    final = (await reviewed(kafka, app_id, count=2))[1]
    assert (final.outcome, final.reviewer) == (ReviewOutcome.INELIGIBLE, "sb-anna")
    assert [f.rule_id for f in final.findings if not f.passed] == ["C01-caseworker-decision"]
    decision = await decision_of(kafka, app_id)
    assert decision.decision is Decision.REJECTED
    assert decision.reasons == ["C01-caseworker-decision"]


async def test_only_valid_caseworker_tokens_may_act(services: ServiceProcesses, service_dsns: dict[str, str]) -> None:
    anonymous = await Caseworker(None).get("/v1/cases")
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "auth.required"
    assert (await Caseworker("egc_guessed").post("/v1/cases/TH-EGOV-2027-000001/confirmation")).status_code == 401
    token = issue_caseworker(service_dsns["review"], "sb-temp")
    assert (await Caseworker(token).get("/v1/cases")).status_code == 200
    issue_caseworker(service_dsns["review"], "sb-temp", command="revoke")
    assert (await Caseworker(token).get("/v1/cases")).status_code == 401
    conn = await asyncpg.connect(service_dsns["review"])
    try:
        stored = await conn.fetchval("SELECT token_sha256 FROM caseworkers WHERE caseworker_id = 'sb-temp'")
    finally:
        await conn.close()
    assert token.encode() not in bytes(stored), "only a hash of the token is stored"


async def review_metric(name: str, *labels: str) -> float:
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(review_url("/metrics"))).text
    lines = [x for x in text.splitlines() if x.startswith(f"{name}{{") and all(la in x for la in labels)]
    return sum(float(x.rsplit(" ", 1)[1]) for x in lines)


async def test_redelivered_received_event_gives_no_second_review(
    services: ServiceProcesses, kafka: KafkaAccess, service_dsns: dict[str, str]
) -> None:
    app_id = f"TH-EGOV-{YEAR}-9{uuid.uuid4().int % 10**6:06d}"
    received = ApplicationReceived(
        application_id=app_id,
        portal_id="portal-a",
        received_at=datetime.now(UTC),
        category_open=True,
        application=FundingApplication.model_validate(sample_application()),
    )
    envelope, completion = as_intake_writes(received)
    # The same application again under a new event id: what a crashed, restarted writer could publish.
    reissued = Envelope.wrap(received, source="/egov/intake", subject=app_id, actor="portal:portal-a")
    completed_again = Envelope.wrap(completion.payload(ApplicationCompleted), source="/egov/intake", subject=app_id)
    duplicates = ('type="de.thueringen.egov.application.received.v1"', 'outcome="duplicate"')
    duplicates_before = await review_metric("egov_events_consumed_total", *duplicates)
    producer = make_producer(kafka, "test-redelivery")
    await producer.start()
    try:
        for one in (envelope, envelope, completion, reissued, completed_again):  # one key: handled in this order
            await publish(producer, APPLICATIONS, app_id, one)
    finally:
        await producer.stop()

    conn = await asyncpg.connect(service_dsns["review"])
    try:
        for _ in range(300):
            if await conn.fetchval("SELECT true FROM processed_events WHERE event_id = $1", completed_again.id):
                break
            await asyncio.sleep(0.1)
        handled = await conn.fetchval("SELECT count(*) FROM processed_events WHERE event_id = ANY($1)", [envelope.id])
        reviews = await conn.fetchval("SELECT count(*) FROM reviews WHERE application_id = $1", app_id)
    finally:
        await conn.close()
    assert (handled, reviews) == (1, 1)
    assert await review_metric("egov_events_consumed_total", *duplicates) == duplicates_before + 1
    await asyncio.sleep(1.0)  # give a wrongly staged second result time to reach the topic
    results = await events_about(kafka, REVIEWS, app_id, ApplicationReviewed, count=2, timeout=3)
    assert len(results) == 1
    assert results[0].causationid == completion.id, "reviewed once complete"


async def test_the_review_service_stays_within_its_memory_budget(services: ServiceProcesses) -> None:
    status = Path(f"/proc/{services.processes['review'].pid}/status").read_text()
    peak_kib = int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1])
    assert peak_kib / 1024 <= 150, f"review peaked at {peak_kib / 1024:.0f} MiB resident"
