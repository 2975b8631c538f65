"""Intake alone against its own real broker and database: the portal API, the Kafka ingress, and outages.

Intake runs as a process against a private broker (port 29452 + 10 * slot, state under .state/) that no
other service reads, so nothing decides the applications behind the tests' backs, and the broker can
be stopped and started again for the outage tests at the end of the module.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import ConsumerRecord, TopicPartition

from runtime.idempotency import fingerprint
from runtime.kafka import KafkaAccess, ensure_topics, make_producer, make_reader
from runtime.record_signatures import decode_secret, signature_headers
from schemas.application import FundingApplication, FundingYear
from schemas.envelope import Envelope
from schemas.events import (
    ApplicationDecided,
    ApplicationReceived,
    ApplicationRejected,
    ApplicationWaitlisted,
    ApplicationWithdrawn,
    CategoryPaused,
    CategoryResumed,
    Decision,
    IntakeWatermark,
    SubmitApplication,
    WaitlistReason,
)
from schemas.topics import (
    ALL_TOPICS,
    APPLICATIONS,
    BUDGET,
    BUDGET_ADMIN,
    DECISIONS,
    SUBMISSIONS,
    Topic,
    dead_letters,
)
from services.intake.domain import body_digest
from services.intake.landing import landed
from services.intake.models import WithdrawalRequest
from services.intake.portals import add_signing_key
from tests.conftest import issue_portal_token
from tests.support import (
    REPO,
    SERVICE_PORTS,
    TEST_SLOT,
    as_principal,
    fresh_database,
    kafka_access,
    read_topic,
    sample_application,
    service_kafka_env,
)

pytestmark = pytest.mark.integration

BROKER_PORT = 29452 + 10 * TEST_SLOT
BROKER_STATE = REPO / ".state" / f"test{TEST_SLOT}-intake-broker"
INTAKE_PORT = SERVICE_PORTS["intake"] + 50
BASE_URL = f"http://127.0.0.1:{INTAKE_PORT}"
QUOTA = 3
PUBLISH_TIMEOUT_MS = 2000


# --- the private broker and the intake process ----------------------------------------------------


def kafka_sh(command: str) -> None:
    env = {**os.environ, "EGOV_STATE_DIR": str(BROKER_STATE), "EGOV_KAFKA_PORT": str(BROKER_PORT)}
    done = subprocess.run([str(REPO / "deploy" / "kafka.sh"), command], env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"kafka.sh {command}: {done.stderr}"


@dataclass
class IntakeProcess:
    kafka: KafkaAccess
    dsn: str
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
        env.update(service_kafka_env(self.kafka, "intake"))
        env.update(
            INTAKE_DATABASE_URL=self.dsn,
            INTAKE_HTTP_PORT=str(INTAKE_PORT),
            INTAKE_PUBLIC_BASE_URL=BASE_URL,
            INTAKE_ENVIRONMENT="test",
            INTAKE_PUBLISH_TIMEOUT_MS=str(PUBLISH_TIMEOUT_MS),
            INTAKE_MAX_OPEN_APPLICATIONS_PER_YEAR=str(QUOTA),
            INTAKE_RATE_LIMIT_PER_SECOND="1000",
            INTAKE_RATE_LIMIT_BURST="1000",
            INTAKE_PORTAL_CACHE_SECONDS="0.3",
        )
        log = open(BROKER_STATE / "intake.log", "ab")  # noqa: SIM115 - handed to the child process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.intake"], cwd=REPO, env=env, stdout=log, stderr=log
        )

    async def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=BASE_URL, timeout=2) as http:
            while time.monotonic() < deadline:
                assert self.process is not None
                assert self.process.poll() is None, f"intake exited; see {BROKER_STATE}/intake.log"
                try:
                    if (await http.get("/ready")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise TimeoutError("intake not ready")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
async def own_broker() -> AsyncIterator[KafkaAccess]:
    BROKER_STATE.mkdir(parents=True, exist_ok=True)
    kafka_sh("reset")
    kafka_sh("start")
    kafka = kafka_access(f"127.0.0.1:{BROKER_PORT}")
    await ensure_topics(kafka, ALL_TOPICS)
    try:
        yield kafka
    finally:
        kafka_sh("reset")  # stops the broker and removes its data; intake.log stays for a look afterwards


@pytest.fixture(scope="module")
async def intake(own_broker: KafkaAccess, pg_admin_dsn: str) -> AsyncIterator[IntakeProcess]:
    dsn = await fresh_database(pg_admin_dsn, f"egov_test{TEST_SLOT}_intake_api")
    process = IntakeProcess(own_broker, dsn)
    process.start()
    try:
        await process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
async def tokens(intake: IntakeProcess) -> dict[str, str]:
    issued = {name: await issue_portal_token(intake.dsn, name) for name in ("portal-a", "portal-b", "portal-lists")}
    issued["limited"] = await issue_portal_token(intake.dsn, "portal-limited")
    issued["scoped"] = await issue_portal_token(intake.dsn, "portal-scoped")
    conn = await asyncpg.connect(intake.dsn)
    try:
        await conn.execute(
            "UPDATE portals SET rate_per_second = 0.5, rate_burst = 2 WHERE portal_id = 'portal-limited'"
        )
        await conn.execute("UPDATE portals SET ags_prefixes = '{16051}' WHERE portal_id = 'portal-scoped'")
    finally:
        await conn.close()
    return issued


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=BASE_URL, timeout=30) as client:
        yield client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def marked(**project: Any) -> tuple[dict[str, Any], str]:
    """A fresh application with a title no other test uses, so it can be found on the topic."""
    title = f"Testvorhaben {uuid.uuid4().hex[:12]}"
    return sample_application(title=title, **project), title


async def records(
    kafka: KafkaAccess, topic: Topic, until: Callable[[list[ConsumerRecord[bytes, bytes]]], bool]
) -> list[Any]:
    """Raw records from the beginning (keys, headers and undecodable values included)."""
    consumer = make_reader(kafka, "test-records")
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic.name, p) for p in consumer.partitions_for_topic(topic.name) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not until(seen):
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                seen.extend(batch)
        return seen
    finally:
        await consumer.stop()


def received_with_title(title: str) -> Callable[[Envelope], bool]:
    def match(envelope: Envelope) -> bool:
        return envelope.is_a(ApplicationReceived) and envelope.data["application"]["project"]["title"] == title

    return match


async def publish(
    kafka: KafkaAccess, topic: Topic, key: str, value: bytes, headers: list[tuple[str, bytes]] | None = None
) -> None:
    """Submissions as a portal principal would publish them; anything else as the operator playing a service."""
    writer = as_principal(kafka, "portal.portal-a") if topic is SUBMISSIONS else kafka
    producer = make_producer(writer, "test-publisher")
    await producer.start()
    try:
        await producer.send_and_wait(topic.name, value, key=key.encode(), headers=headers)
    finally:
        await producer.stop()


# --- submitting over HTTP -------------------------------------------------------------------------


async def test_valid_submission_is_received_with_the_exact_payload(
    intake: IntakeProcess, tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    body = sample_application()
    response = await http.post("/v1/applications", json=body, headers=auth(tokens["portal-a"]))
    assert response.status_code == 202, response.text
    receipt = response.json()
    app_id = receipt["application_id"]
    assert receipt["status"] == "received"
    assert receipt["status_url"] == f"{BASE_URL}/v1/applications/{app_id}" == response.headers["location"]
    assert receipt["category_open"] is True
    assert receipt["category_notice"] is None

    seen = await records(intake.kafka, APPLICATIONS, lambda rs: any(r.key == app_id.encode() for r in rs))
    mine = [r for r in seen if r.key == app_id.encode()]
    assert len(mine) == 1
    envelope = Envelope.from_bytes(mine[0].value)
    assert (envelope.type, envelope.subject, envelope.source) == (
        ApplicationReceived.wire_type(),
        app_id,
        "/egov/intake",
    )
    assert envelope.actor == "portal:portal-a"
    assert dict(mine[0].headers)["ce_id"] == envelope.id.encode()
    event = envelope.payload(ApplicationReceived)
    assert event.application == FundingApplication.model_validate(body)
    assert envelope.data["application"] == {**body, "early_start": None}
    assert (event.portal_id, event.category_open, event.submission_id) == ("portal-a", True, None)
    assert event.received_at.isoformat() == receipt["received_at"] == envelope.time.isoformat()

    status = (await http.get(f"/v1/applications/{app_id}", headers=auth(tokens["portal-a"]))).json()
    assert status["status"] == "received"
    assert status["requested_amount_cents"] == body["project"]["requested_amount_cents"]
    assert status["fiscal_years"] == [2027]


async def test_the_served_openapi_document_is_the_committed_one_and_metrics_count_receipts(
    intake: IntakeProcess, tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    served = (await http.get("/openapi.json")).json()
    assert served == json.loads((REPO / "schemas" / "openapi" / "intake.json").read_text(encoding="utf-8"))

    def received(exposition: str) -> float:
        line = 'egov_applications_received_total{category="schulung"} '
        return sum(float(row.removeprefix(line)) for row in exposition.splitlines() if row.startswith(line))

    before = received((await http.get("/metrics")).text)
    response = await http.post(
        "/v1/applications", json=sample_application(category="schulung"), headers=auth(tokens["portal-a"])
    )
    assert response.status_code == 202, response.text
    assert received((await http.get("/metrics")).text) == before + 1


async def test_a_paused_category_is_named_in_the_receipt_and_the_event(
    intake: IntakeProcess, tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    body, title = marked(category="e_akte")
    response = await http.post("/v1/applications", json=body, headers=auth(tokens["portal-a"]))
    assert response.status_code == 202, response.text
    assert response.json()["category_open"] is False
    assert "paused" in response.json()["category_notice"]
    seen = await read_topic(intake.kafka, APPLICATIONS, lambda es: any(map(received_with_title(title), es)))
    [event] = [e.payload(ApplicationReceived) for e in seen if received_with_title(title)(e)]
    assert event.category_open is False


async def test_an_invalid_submission_gets_every_error_at_once(tokens: dict[str, str], http: httpx.AsyncClient) -> None:
    body = sample_application(ags="15051000", category="no_such_thing", start_date="2027-12-01", end_date="2027-01-01")
    body["project"]["requested_amount_cents"] = body["project"]["eligible_cost_cents"] + 1
    body["project"]["funding"][0]["amount_cents"] = body["project"]["requested_amount_cents"]
    del body["contact"]
    body["declarations"]["no_double_funding"] = False
    body["attachments"][0]["digest"] = "md5:abc"
    response = await http.post("/v1/applications", json=body, headers=auth(tokens["portal-a"]))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["code"], problem["status"]) == ("application.invalid", 422)
    found = {(e["code"], e["pointer"]) for e in problem["errors"]}
    assert {
        ("applicant.not_in_thueringen", "/applicant/ags"),
        ("field.required", "/contact"),
        ("category.unknown", "/project/category"),
        ("dates.end_before_start", "/project/end_date"),
        ("amount.requested_exceeds_eligible", "/project/requested_amount_cents"),
        ("declarations.not_confirmed", "/declarations/no_double_funding"),
        ("field.invalid_format", "/attachments/0/digest"),
    } <= found, found


async def test_fifty_concurrent_submits_with_one_key_make_one_application(
    intake: IntakeProcess, tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    body, title = marked()
    headers = {**auth(tokens["portal-a"]), "Idempotency-Key": str(uuid.uuid4())}
    responses = await asyncio.gather(*(http.post("/v1/applications", json=body, headers=headers) for _ in range(50)))
    assert {r.status_code for r in responses} == {202}, [r.text for r in responses if r.status_code != 202][:3]
    answers = {r.content for r in responses}
    assert len(answers) == 1, "every duplicate gets the original answer"
    app_id = responses[0].json()["application_id"]

    again = await http.post("/v1/applications", json=body, headers=headers)
    assert (again.status_code, again.content) == (202, responses[0].content)
    await read_topic(intake.kafka, APPLICATIONS, lambda es: any(map(received_with_title(title), es)))
    await asyncio.sleep(1)  # a second event, if any, would have landed by now
    seen = await read_topic(intake.kafka, APPLICATIONS, lambda es: False, timeout=2)
    mine = [e for e in seen if received_with_title(title)(e)]
    assert [e.subject for e in mine] == [app_id]


async def test_the_same_key_with_another_body_is_a_conflict(tokens: dict[str, str], http: httpx.AsyncClient) -> None:
    headers = {**auth(tokens["portal-a"]), "Idempotency-Key": str(uuid.uuid4())}
    first = await http.post("/v1/applications", json=marked()[0], headers=headers)
    assert first.status_code == 202, first.text
    other = await http.post("/v1/applications", json=marked()[0], headers=headers)
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency.key_reused"
    # The key of another portal is another key.
    elsewhere = await http.post("/v1/applications", json=marked()[0], headers={**headers, **auth(tokens["portal-b"])})
    assert elsewhere.status_code == 202


async def test_the_same_application_in_another_key_order_is_the_same_body(
    tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    """Idempotency compares the JSON document, not its bytes: a retry re-serialised by the portal's
    library in another member order gets the original answer, not a 409."""
    headers = {**auth(tokens["portal-a"]), "Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())}
    body = marked()[0]
    first = await http.post("/v1/applications", content=json.dumps(body).encode(), headers=headers)
    assert first.status_code == 202, first.text
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=1).encode()
    again = await http.post("/v1/applications", content=reordered, headers=headers)
    assert (again.status_code, again.json()) == (202, first.json())


async def test_a_member_named_twice_is_refused(tokens: dict[str, str], http: httpx.AsyncClient) -> None:
    body = json.dumps(marked()[0])
    twice = body[:-1] + ', "partners": []}'  # "partners" is already a member of the application
    headers = {**auth(tokens["portal-a"]), "Content-Type": "application/json"}
    answer = await http.post("/v1/applications", content=twice.encode(), headers=headers)
    assert answer.status_code == 422, answer.text
    assert [(e["code"], e["pointer"]) for e in answer.json()["errors"]] == [("body.duplicate_key", "/partners")]


# --- listing, reading, withdrawing ----------------------------------------------------------------


async def test_the_list_filters_and_pages_with_a_cursor(tokens: dict[str, str], http: httpx.AsyncClient) -> None:
    headers = auth(tokens["portal-lists"])
    shapes = [
        ("dms_eservices", 2027),
        ("e_akte", 2027),
        ("dms_eservices", 2028),
        ("schulung", 2028),
        ("dms_eservices", 2027),
    ]
    ids = []
    for category, year in shapes:
        body = sample_application(category=category)
        body["project"]["funding"] = [{"fiscal_year": year, "amount_cents": body["project"]["requested_amount_cents"]}]
        response = await http.post("/v1/applications", json=body, headers=headers)
        assert response.status_code == 202, response.text
        ids.append(response.json()["application_id"])

    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/v1/applications", params=params, headers=headers)).json()
        pages.append([item["application_id"] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [ids[0:2], ids[2:4], ids[4:5]]

    async def listed(**params: Any) -> list[str]:
        response = await http.get("/v1/applications", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [item["application_id"] for item in response.json()["items"]]

    assert await listed(category="dms_eservices") == [ids[0], ids[2], ids[4]]
    assert await listed(fiscal_year=2028) == [ids[2], ids[3]]
    assert await listed(category="dms_eservices", fiscal_year=2027) == [ids[0], ids[4]]
    withdrawn = await http.post(f"/v1/applications/{ids[1]}/withdrawal", headers=headers)
    assert withdrawn.status_code == 202, withdrawn.text
    assert await listed(status="withdrawn") == [ids[1]]
    assert await listed(status="received") == [ids[0], *ids[2:]]

    bad_cursor = await http.get("/v1/applications", params={"cursor": "bm90IGEgY3Vyc29y"}, headers=headers)
    assert (bad_cursor.status_code, bad_cursor.json()["code"]) == (400, "request.invalid_cursor")
    for params in ({"status": "sleeping"}, {"limit": 0}, {"limit": 1000}, {"fiscal_year": "soon"}):
        response = await http.get("/v1/applications", params=params, headers=headers)
        assert response.status_code == 422, params
        assert response.headers["content-type"] == "application/problem+json"


async def test_a_withdrawal_is_published_once_and_refused_once_decided(
    intake: IntakeProcess, tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    headers = auth(tokens["portal-a"])
    app_id = (await http.post("/v1/applications", json=marked()[0], headers=headers)).json()["application_id"]
    withdrawals = await asyncio.gather(
        *(
            http.post(f"/v1/applications/{app_id}/withdrawal", json={"reason": "Projekt verschoben"}, headers=headers)
            for _ in range(5)
        )
    )
    codes = sorted(r.status_code for r in withdrawals)
    assert codes == [202, 409, 409, 409, 409], [r.text for r in withdrawals]
    assert all(r.json()["code"].startswith("application.") for r in withdrawals if r.status_code == 409)
    assert (await http.get(f"/v1/applications/{app_id}", headers=headers)).json()["status"] == "withdrawn"
    again = await http.post(f"/v1/applications/{app_id}/withdrawal", headers=headers)
    assert (again.status_code, again.json()["code"]) == (409, "application.already_withdrawn")

    def withdrawn(es: list[Envelope]) -> list[Envelope]:
        return [e for e in es if e.subject == app_id and e.is_a(ApplicationWithdrawn)]

    seen = await read_topic(intake.kafka, APPLICATIONS, lambda es: bool(withdrawn(es)))
    [event] = [e.payload(ApplicationWithdrawn) for e in withdrawn(seen)]
    assert (event.portal_id, event.reason) == ("portal-a", "Projekt verschoben")

    decided_id = (await http.post("/v1/applications", json=marked()[0], headers=headers)).json()["application_id"]
    now = datetime.now(UTC)
    decision = ApplicationDecided(
        application_id=decided_id,
        decision=Decision.APPROVED,
        amount_cents=9_600_000,
        funding=[FundingYear(fiscal_year=2027, amount_cents=9_600_000)],
        reasons=[],
        received_at=now,
        decided_at=now,
    )
    envelope = Envelope.wrap(decision, source="/egov/budget", subject=decided_id)
    await publish(intake.kafka, DECISIONS, decided_id, envelope.to_bytes())
    for _ in range(100):
        status = (await http.get(f"/v1/applications/{decided_id}", headers=headers)).json()
        if status["status"] == "approved":
            break
        await asyncio.sleep(0.1)
    assert status["status"] == "approved", status
    assert [t["type"] for t in status["timeline"]] == ["application.received.v1", "application.decided.v1"]
    refused = await http.post(f"/v1/applications/{decided_id}/withdrawal", headers=headers)
    assert (refused.status_code, refused.json()["code"]) == (409, "application.already_decided")

    invalid = await http.post(f"/v1/applications/{app_id}/withdrawal", json={"reason": ""}, headers=headers)
    assert invalid.status_code == 422
    wrong_type = await http.post(
        f"/v1/applications/{app_id}/withdrawal", content=b"reason", headers={**headers, "Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 415


async def test_a_keyed_withdrawal_repeated_is_answered_once_and_another_request_under_its_key_is_a_409(
    intake: IntakeProcess, tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    headers = auth(tokens["portal-a"])
    app_id, other_id = [
        (await http.post("/v1/applications", json=marked()[0], headers=headers)).json()["application_id"]
        for _ in range(2)
    ]
    keyed = {**headers, "Idempotency-Key": str(uuid.uuid4()), "Content-Type": "application/json"}
    url = f"/v1/applications/{app_id}/withdrawal"
    first, *repeats = await asyncio.gather(
        *(http.post(url, content='{"reason": "Projekt verschoben"}', headers=keyed) for _ in range(4))
    )
    # Concurrent repeats wait for the first; another spacing is the same request.
    later = await http.post(url, content='{"reason":"Projekt verschoben"}', headers=keyed)
    assert first.status_code == 202, first.text
    assert [(r.status_code, r.json()) for r in [*repeats, later]] == [(202, first.json())] * 4
    assert first.json()["status"] == "withdrawn"
    other_reason = await http.post(url, content='{"reason": "anders"}', headers=keyed)
    other_application = await http.post(f"/v1/applications/{other_id}/withdrawal", headers=keyed)
    for refused in (other_reason, other_application):
        assert (refused.status_code, refused.json()["code"]) == (409, "idempotency.key_reused"), refused.text
        assert refused.headers["content-type"] == "application/problem+json"
    assert (await http.get(f"/v1/applications/{other_id}", headers=headers)).json()["status"] == "received"
    fresh = await http.post(url, headers={**headers, "Idempotency-Key": str(uuid.uuid4())})
    assert (fresh.status_code, fresh.json()["code"]) == (409, "application.already_withdrawn")

    # No body, {} and {"reason": null} are one request; a refused one keeps no key.
    empty = {**headers, "Idempotency-Key": str(uuid.uuid4())}
    quiet_id = (await http.post("/v1/applications", json=marked()[0], headers=headers)).json()["application_id"]
    answers = [
        await http.post(f"/v1/applications/{quiet_id}/withdrawal", headers=empty),
        await http.post(f"/v1/applications/{quiet_id}/withdrawal", json={}, headers=empty),
        await http.post(f"/v1/applications/{quiet_id}/withdrawal", json={"reason": None}, headers=empty),
    ]
    assert [a.status_code for a in answers] == [202, 202, 202], [a.text for a in answers]
    assert answers[0].json() == answers[1].json() == answers[2].json()

    def withdrawals_of(es: list[Envelope]) -> list[Envelope]:
        return [e for e in es if e.subject in {app_id, quiet_id} and e.is_a(ApplicationWithdrawn)]

    seen = await read_topic(intake.kafka, APPLICATIONS, lambda es: len({e.subject for e in withdrawals_of(es)}) == 2)
    assert len({e.id for e in withdrawals_of(seen)}) == 2, "one withdrawal event per application"


async def test_a_keyed_withdrawal_whose_outcome_was_unknown_is_answered_with_the_withdrawal_that_landed(
    intake: IntakeProcess, tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    """The state a 503 broker.outcome_unknown leaves: the key held without an answer, and (here) the
    withdrawal landed after all. The retry with the key is the 202 of that withdrawal, not a 409."""
    headers = auth(tokens["portal-a"])
    app_id = (await http.post("/v1/applications", json=marked()[0], headers=headers)).json()["application_id"]
    url = f"/v1/applications/{app_id}/withdrawal"
    landed = await http.post(url, headers=headers)
    assert landed.status_code == 202, landed.text
    key = str(uuid.uuid4())
    conn = await asyncpg.connect(intake.dsn)
    try:
        await conn.execute(
            "INSERT INTO command_keys (principal, key, request_sha256) VALUES ($1, $2, $3)",
            "portal:portal-a",
            key,
            fingerprint("POST", url, WithdrawalRequest()),
        )
    finally:
        await conn.close()
    settled = await http.post(url, headers={**headers, "Idempotency-Key": key})
    assert (settled.status_code, settled.json()) == (202, landed.json())
    again = await http.post(url, headers={**headers, "Idempotency-Key": key})
    assert (again.status_code, again.json()) == (202, landed.json())


async def test_a_submissions_key_is_not_taken_by_a_withdrawal(tokens: dict[str, str], http: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    headers = auth(tokens["portal-a"])
    submitted = await http.post("/v1/applications", json=marked()[0], headers={**headers, **key})
    assert submitted.status_code == 202, submitted.text
    url = f"/v1/applications/{submitted.json()['application_id']}/withdrawal"
    refused = await http.post(url, headers={**headers, **key})
    assert (refused.status_code, refused.json()["code"]) == (409, "idempotency.key_reused")


async def test_a_portal_cannot_read_list_or_withdraw_another_portals_applications(
    tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    mine = await http.post("/v1/applications", json=marked()[0], headers=auth(tokens["portal-b"]))
    app_id = mine.json()["application_id"]
    intruder = auth(tokens["portal-a"])

    read = await http.get(f"/v1/applications/{app_id}", headers=intruder)
    missing = await http.get("/v1/applications/TH-EGOV-2027-999999", headers=intruder)
    assert read.status_code == missing.status_code == 404
    assert {k: v for k, v in read.json().items() if k != "instance"} == {
        k: v for k, v in missing.json().items() if k != "instance"
    }, "another portal's application looks exactly like a missing one"

    listed, cursor = [], None
    while True:
        page = (
            await http.get(
                "/v1/applications", params={"limit": 200, **({"cursor": cursor} if cursor else {})}, headers=intruder
            )
        ).json()
        listed += [item["application_id"] for item in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert listed, "portal A's own applications are listed"
    assert app_id not in listed

    withdrawal = await http.post(f"/v1/applications/{app_id}/withdrawal", headers=intruder)
    assert (withdrawal.status_code, withdrawal.json()["code"]) == (404, "application.not_found")
    own = (await http.get(f"/v1/applications/{app_id}", headers=auth(tokens["portal-b"]))).json()
    assert own["status"] == "received", "the intruder's withdrawal changed nothing"


async def test_the_status_view_does_not_depend_on_the_order_of_the_topics(
    intake: IntakeProcess, tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    """A rebuild replays several topics: an application's later events may come before its receipt."""
    app_id = f"TH-EGOV-2027-9{uuid.uuid4().int % 10**6:06d}"
    now = datetime.now(UTC)
    waitlisted = ApplicationWaitlisted(
        application_id=app_id,
        position=3,
        reason=WaitlistReason.INSUFFICIENT_FUNDS,
        amount_cents=9_600_000,
        ready_at=now,
    )
    received = ApplicationReceived(
        application_id=app_id,
        portal_id="portal-a",
        received_at=now,
        category_open=True,
        application=FundingApplication.model_validate(sample_application()),
    )
    later = Envelope.wrap(
        waitlisted, source="/egov/budget", subject=app_id, time=now.replace(microsecond=0) + timedelta(seconds=2)
    )
    await publish(intake.kafka, BUDGET, app_id, later.to_bytes())
    conn = await asyncpg.connect(intake.dsn)
    try:
        for _ in range(100):
            if await conn.fetchval("SELECT count(*) FROM application_timeline WHERE application_id = $1", app_id):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the waitlisted event was not projected")
    finally:
        await conn.close()
    first = Envelope.wrap(received, source="/egov/intake", subject=app_id, time=now)
    await publish(intake.kafka, APPLICATIONS, app_id, first.to_bytes())
    for _ in range(100):
        response = await http.get(f"/v1/applications/{app_id}", headers=auth(tokens["portal-a"]))
        if response.status_code == 200:
            break
        await asyncio.sleep(0.1)
    status = response.json()
    assert status["status"] == "waitlisted"
    assert [t["type"] for t in status["timeline"]] == ["application.received.v1", "budget.waitlisted.v1"]


# --- quotas, limits, credentials and bad input ----------------------------------------------------


async def test_an_applicant_has_at_most_the_quota_of_open_applications_per_fiscal_year(
    tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    headers = auth(tokens["portal-a"])
    ags = f"16{uuid.uuid4().int % 10**6:06d}"
    answers = await asyncio.gather(
        *(http.post("/v1/applications", json=sample_application(ags=ags), headers=headers) for _ in range(QUOTA + 3))
    )
    accepted = [r.json()["application_id"] for r in answers if r.status_code == 202]
    refused = [r.json() for r in answers if r.status_code != 202]
    assert len(accepted) == QUOTA, [r.text for r in answers]
    assert {(p["status"], p["code"]) for p in refused} == {(409, "applicant.open_applications_limit")}
    assert refused[0]["errors"][0]["pointer"] == "/project/funding"

    next_year = sample_application(ags=ags)
    next_year["project"]["funding"] = [{"fiscal_year": 2028, "amount_cents": 9_600_000}]
    assert (await http.post("/v1/applications", json=next_year, headers=headers)).status_code == 202

    assert (await http.post(f"/v1/applications/{accepted[0]}/withdrawal", headers=headers)).status_code == 202
    retry = await http.post("/v1/applications", json=sample_application(ags=ags), headers=headers)
    assert retry.status_code == 202, "a withdrawn application no longer counts"


async def test_a_portal_over_its_rate_limit_is_told_when_to_come_back(
    tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    answers = [await http.get("/v1/applications", headers=auth(tokens["limited"])) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert answers[2].json()["code"] == "request.rate_limited"
    assert int(answers[2].headers["retry-after"]) >= 1
    assert (await http.get("/v1/applications", headers=auth(tokens["portal-a"]))).status_code == 200, "per portal"


async def test_credentials_are_required_and_checked(
    intake: IntakeProcess, tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    for headers in ({}, {"Authorization": "Basic cG9ydGFsOnB3"}, {"Authorization": "Bearer"}, auth("egp_unknown")):
        response = await http.get("/v1/applications", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["code"] in ("auth.required", "auth.invalid_token")
        assert "www-authenticate" in response.headers

    scoped = auth(tokens["scoped"])
    outside = await http.post("/v1/applications", json=sample_application(ags="16066012"), headers=scoped)
    assert (outside.status_code, outside.json()["code"]) == (403, "auth.applicant_not_permitted")
    inside = await http.post("/v1/applications", json=sample_application(ags="16051999"), headers=scoped)
    assert inside.status_code == 202, inside.text

    token = await issue_portal_token(intake.dsn, "portal-revoked")
    assert (await http.get("/v1/applications", headers=auth(token))).status_code == 200
    conn = await asyncpg.connect(intake.dsn)
    try:
        await conn.execute("UPDATE portals SET revoked_at = now() WHERE portal_id = 'portal-revoked'")
    finally:
        await conn.close()
    await asyncio.sleep(0.5)  # the credential cache of this instance: INTAKE_PORTAL_CACHE_SECONDS=0.3
    revoked = await http.get("/v1/applications", headers=auth(token))
    assert (revoked.status_code, revoked.json()["code"]) == (401, "auth.invalid_token")


GARBAGE_BODIES = [
    b"",
    b"{",
    b"[]",
    b"null",
    b'"text"',
    b"\xff\xfe\x00garbage",
    b"[" * 100_000,
    b'{"applicant": ' * 5_000,
    b"1" * 50_000,
    b'{"project": {"requested_amount_cents": 1e400}}',
    b'{"project": {"requested_amount_cents": 12.5, "funding": "all"}, "partners": {}}',
    b'{"applicant": {"ags": null}, "declarations": [true]}',
    json.dumps(sample_application(title="Null\u0000byte")).encode(),
]


async def test_nothing_a_client_sends_causes_a_server_error(tokens: dict[str, str], http: httpx.AsyncClient) -> None:
    headers = {**auth(tokens["portal-a"]), "Content-Type": "application/json"}
    for body in GARBAGE_BODIES:
        response = await http.post("/v1/applications", content=body, headers=headers)
        assert response.status_code == 422, (body[:40], response.text)
        assert response.json()["errors"], body[:40]

    too_large = b'{"x": "' + b"a" * 300_000 + b'"}'
    declared = await http.post("/v1/applications", content=too_large, headers=headers)
    assert (declared.status_code, declared.json()["code"]) == (413, "request.too_large")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b" " * 10_000

    streamed = await http.post("/v1/applications", content=chunks(), headers=headers)
    assert streamed.status_code == 413, "a chunked body is counted as it arrives"
    text = await http.post("/v1/applications", content=b"<xml/>", headers={**headers, "Content-Type": "text/xml"})
    assert (text.status_code, text.json()["code"]) == (415, "request.unsupported_media_type")

    odd_requests = [
        http.get("/v1/applications/%00%ff", headers=headers),
        http.post("/v1/applications/TH-EGOV-2027-%00/withdrawal", headers=headers),
        http.get("/v1/applications/" + "x" * 5000, headers=headers),
        http.delete("/v1/applications", headers=headers),
        http.get("/v2/nothing", headers=headers),
        http.post("/v1/applications", content=b"{}", headers={**headers, "Idempotency-Key": "k" * 201}),
        http.get("/v1/applications", params={"cursor": "\u00ff" * 10}, headers=headers),
        http.get("/v1/applications", params={"category": "DROP TABLE"}, headers=headers),
    ]
    for response in await asyncio.gather(*odd_requests):
        assert 400 <= response.status_code < 500, (response.request.url, response.status_code)
        assert response.headers["content-type"] == "application/problem+json"


# --- the Kafka ingress ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def portal_a_key(intake: IntakeProcess, tokens: dict[str, str]) -> bytes:
    """portal-a's submission-signing key, as `portals issue` creates it beside the token."""
    conn = await asyncpg.connect(intake.dsn)
    try:
        return decode_secret(await add_signing_key(conn, "portal-a", None))
    finally:
        await conn.close()


def submission(submission_id: str, application: dict[str, Any], portal_id: str = "portal-a") -> bytes:
    command = SubmitApplication(portal_id=portal_id, submission_id=submission_id, application=application)
    return Envelope.wrap(command, source="/portals/portal-a", subject=submission_id, actor=portal_id).to_bytes()


def signed_by(key: bytes, value: bytes) -> list[tuple[str, bytes]]:
    """The signature headers portal-a's producer adds (runtime.record_signatures)."""
    return signature_headers([key], json.loads(value)["id"], value)


def about(
    submission_id: str, event: type[ApplicationReceived] | type[ApplicationRejected]
) -> Callable[[Envelope], bool]:
    return lambda e: e.is_a(event) and e.data.get("submission_id") == submission_id


async def test_kafka_submissions_valid_invalid_duplicate_and_garbage_each_end_where_they_should(
    intake: IntakeProcess, tokens: dict[str, str], portal_a_key: bytes, http: httpx.AsyncClient
) -> None:
    valid, invalid, stranger, after, twice = (f"sub-{uuid.uuid4().hex[:8]}" for _ in range(5))
    application = sample_application()
    broken = sample_application(ags="99999999", requested_amount_cents=10**9)
    del broken["declarations"]
    garbage = b"\x00\xff this is not an event"
    not_a_command = (
        b'{"specversion": "1.0", "id": "x", "source": "/p", "type": "de.thueringen.egov.application.submit.v1",'
        b' "subject": "s", "time": "2027-01-01T00:00:00Z", "correlationid": "s", "data": {"portal_id": "portal-a"}}'
    )

    async def send(key: str, value: bytes, *, sign: bool = True) -> None:
        await publish(intake.kafka, SUBMISSIONS, key, value, signed_by(portal_a_key, value) if sign else None)

    await send(valid, submission(valid, application))
    await send(valid, submission(valid, application))  # published twice
    await send(valid, submission(valid, sample_application()))  # id reused
    await send(invalid, submission(invalid, broken))
    await send(stranger, submission(stranger, sample_application(), "portal-x"))  # signed, but not by portal-x
    # "partners" named twice: the decoder would take the second; intake refuses the guess.
    repeated = submission(twice, sample_application()).replace(b'"application":{', b'"application":{"partners":[{}],')
    assert repeated.count(b'"partners":') == 2
    await send(twice, repeated)
    await send(after, garbage, sign=False)
    await send("s", not_a_command)  # keyed by its subject: it is refused for its payload, not its key
    await send(after, submission(after, sample_application()))

    expected = [
        about(valid, ApplicationRejected),
        about(invalid, ApplicationRejected),
        about(stranger, ApplicationRejected),
        about(twice, ApplicationRejected),
        about(after, ApplicationReceived),
    ]
    seen = await read_topic(intake.kafka, APPLICATIONS, lambda es: all(any(map(m, es)) for m in expected))

    [received] = [e for e in seen if about(valid, ApplicationReceived)(e)]
    event = received.payload(ApplicationReceived)
    assert event.application == FundingApplication.model_validate(application)
    assert (event.portal_id, event.submission_id) == ("portal-a", valid)
    assert received.causationid is not None
    [reused] = [e.payload(ApplicationRejected) for e in seen if about(valid, ApplicationRejected)(e)]
    assert [p.code for p in reused.errors] == ["submission.id_reused"]
    [rejected] = [e.payload(ApplicationRejected) for e in seen if about(invalid, ApplicationRejected)(e)]
    codes = {(p.code, p.pointer) for p in rejected.errors}
    assert {
        ("field.required", "/declarations"),
        ("applicant.not_in_thueringen", "/applicant/ags"),
        ("amount.requested_exceeds_eligible", "/project/requested_amount_cents"),
    } <= codes, codes
    [unknown] = [e.payload(ApplicationRejected) for e in seen if about(stranger, ApplicationRejected)(e)]
    assert [p.code for p in unknown.errors] == ["portal.unauthenticated"], "an unknown portal proves nothing"
    [doubled] = [e.payload(ApplicationRejected) for e in seen if about(twice, ApplicationRejected)(e)]
    assert [(p.code, p.pointer) for p in doubled.errors] == [("body.duplicate_key", "/partners")]
    assert len([e for e in seen if about(after, ApplicationReceived)(e)]) == 1, "the stream kept flowing"

    dead = await records(intake.kafka, dead_letters("intake"), lambda rs: len(rs) >= 2)
    reasons = {r.value: dict(r.headers) for r in dead}
    assert reasons[garbage]["dlq_reason"] == b"undecodable"
    assert reasons[garbage]["dlq_origin"].startswith(f"{SUBMISSIONS.name}/".encode())
    assert reasons[not_a_command]["dlq_reason"] == b"invalid_payload"

    for _ in range(50):
        status = await http.get(f"/v1/applications/{event.application_id}", headers=auth(tokens["portal-a"]))
        if status.status_code == 200:
            break
        await asyncio.sleep(0.1)
    assert status.json()["status"] == "received", "the portal sees a Kafka-path application over HTTP too"


async def test_a_near_1_mib_undecodable_submission_is_dead_lettered_cut_to_fit_and_later_ones_are_received(
    intake: IntakeProcess, portal_a_key: bytes
) -> None:
    """The record that stalled intake's submissions consumer: its dead-letter copy did not fit, the
    consumer rewound and fetched it again forever, on every partition."""
    first, after = (f"sub-{uuid.uuid4().hex[:8]}" for _ in range(2))
    value = submission(first, sample_application())
    await publish(intake.kafka, SUBMISSIONS, first, value, signed_by(portal_a_key, value))
    await read_topic(intake.kafka, APPLICATIONS, lambda es: any(map(about(first, ApplicationReceived), es)))
    huge = b"\xff" + os.urandom(1_048_389)  # 1,048,390 bytes, not JSON
    await publish(intake.kafka, SUBMISSIONS, after, huge)  # the same key: the same partition, just before
    value = submission(after, sample_application())
    await publish(intake.kafka, SUBMISSIONS, after, value, signed_by(portal_a_key, value))

    seen = await read_topic(intake.kafka, APPLICATIONS, lambda es: any(map(about(after, ApplicationReceived), es)))
    assert any(map(about(after, ApplicationReceived), seen)), "the submission behind the huge record was received"
    digest = hashlib.sha256(huge).hexdigest().encode()
    dead = await records(
        intake.kafka,
        dead_letters("intake"),
        lambda rs: any(dict(r.headers).get("dlq_original_sha256") == digest for r in rs),
    )
    [letter] = [r for r in dead if dict(r.headers).get("dlq_original_sha256") == digest]
    headers = dict(letter.headers)
    assert headers["dlq_reason"] == b"undecodable"
    assert headers["dlq_original_size"] == b"1048390"
    assert headers["dlq_origin"].startswith(f"{SUBMISSIONS.name}/".encode())
    assert huge.startswith(letter.value)
    assert len(letter.value) < len(huge), "cut to fit the dead-letter topic"


async def test_a_category_paused_through_the_budget_admin_api_is_closed_in_receipts_until_resumed(
    intake: IntakeProcess, tokens: dict[str, str], portal_a_key: bytes, http: httpx.AsyncClient
) -> None:
    """budget.category_paused on the admin topic reaches intake: the receipt over HTTP and the event
    of a Kafka submission both say the category is not open, until budget.category_resumed."""
    category = "schulung"  # open in the rules file

    async def admin_event(event: CategoryPaused | CategoryResumed) -> None:
        envelope = Envelope.wrap(event, source="/egov/budget", subject=f"category:{category}", actor="admin:test")
        await publish(intake.kafka, BUDGET_ADMIN, f"category:{category}", envelope.to_bytes())

    async def paused_in_intake(expected: bool) -> None:
        conn = await asyncpg.connect(intake.dsn)
        try:
            for _ in range(200):
                if bool(await conn.fetchval("SELECT true FROM paused_categories WHERE category = $1", category)) is (
                    expected
                ):
                    return
                await asyncio.sleep(0.1)
        finally:
            await conn.close()
        raise AssertionError(f"intake never saw {category} {'paused' if expected else 'resumed'}")

    async def receipt() -> dict[str, Any]:
        response = await http.post(
            "/v1/applications", json=sample_application(category=category), headers=auth(tokens["portal-a"])
        )
        assert response.status_code == 202, response.text
        return dict(response.json())

    await admin_event(CategoryPaused(category=category))
    try:
        await paused_in_intake(True)
        over_http = await receipt()
        assert (over_http["category_open"], "paused" in over_http["category_notice"]) == (False, True)

        over_kafka = f"sub-{uuid.uuid4().hex[:8]}"
        value = submission(over_kafka, sample_application(category=category))
        await publish(intake.kafka, SUBMISSIONS, over_kafka, value, signed_by(portal_a_key, value))
        seen = await read_topic(
            intake.kafka, APPLICATIONS, lambda es: any(map(about(over_kafka, ApplicationReceived), es))
        )
        [event] = [e.payload(ApplicationReceived) for e in seen if about(over_kafka, ApplicationReceived)(e)]
        assert event.category_open is False
    finally:
        await admin_event(CategoryResumed(category=category))
        await paused_in_intake(False)
    again = await receipt()
    assert (again["category_open"], again["category_notice"]) == (True, None)


# --- watermarks: what intake promises budget about the applications topic ---------------------------


def decoded(record: ConsumerRecord[bytes, bytes]) -> Envelope | None:
    try:
        return Envelope.from_bytes(record.value)
    except ValueError:
        return None


def watermarks_in(seen: list[ConsumerRecord[bytes, bytes]]) -> list[tuple[int, int, datetime]]:
    """(partition, offset, watermark) of every watermark record, each on the partition it speaks for."""
    marks = []
    for r in seen:
        envelope = decoded(r)
        if envelope is not None and envelope.is_a(IntakeWatermark):
            mark = envelope.payload(IntakeWatermark)
            assert mark.partition == r.partition
            marks.append((r.partition, r.offset, mark.watermark))
    return marks


async def test_a_claim_held_up_is_passed_by_no_watermark_before_it_is_on_its_partition(
    intake: IntakeProcess, tokens: dict[str, str], portal_a_key: bytes, http: httpx.AsyncClient
) -> None:
    """An HTTP claim waits on its applicant's quota lock (held here, as a slow claim would) while a later
    application comes in through the Kafka ingress and is appended: no watermark may pass the held
    one's receipt time until it is on its partition, whatever partition the later one went to."""
    held_ags = f"16{uuid.uuid4().int % 10**6:06d}"
    later = f"sub-{uuid.uuid4().hex[:8]}"
    blocker = await asyncpg.connect(intake.dsn)
    try:
        await blocker.execute("SELECT pg_advisory_lock(7316101, hashtext($1))", held_ags)
        first = asyncio.create_task(
            http.post("/v1/applications", json=sample_application(ags=held_ags), headers=auth(tokens["portal-a"]))
        )
        await asyncio.sleep(0.5)
        value = submission(later, sample_application())
        await publish(intake.kafka, SUBMISSIONS, later, value, signed_by(portal_a_key, value))
        seen = await read_topic(intake.kafka, APPLICATIONS, lambda es: any(map(about(later, ApplicationReceived), es)))
        await asyncio.sleep(1.0)  # watermarks are due every 150 ms while applications flow
        assert not first.done()
    finally:
        await blocker.execute("SELECT pg_advisory_unlock(7316101, hashtext($1))", held_ags)
        await blocker.close()
    answer = await first
    assert answer.status_code == 202, answer.text  # held past the claim bound, but claimed in time
    held_at = datetime.fromisoformat(answer.json()["received_at"])
    [later_event] = [e.payload(ApplicationReceived) for e in seen if about(later, ApplicationReceived)(e)]
    later_at = later_event.received_at
    assert held_at < later_at
    held_id, later_id = answer.json()["application_id"], later_event.application_id

    def passed_both(seen: list[ConsumerRecord[bytes, bytes]]) -> bool:
        latest: dict[int, datetime] = {}
        for partition, _, at in watermarks_in(seen):
            latest[partition] = max(at, latest.get(partition, at))
        return len(latest) == APPLICATIONS.partitions and min(latest.values()) > later_at

    log = await records(intake.kafka, APPLICATIONS, passed_both)
    assert passed_both(log), "watermarks pass both places once both are on the log"
    where = {e.subject: (r.partition, r.offset) for r in log if (e := decoded(r)) is not None}
    for app_id, place in ((held_id, held_at), (later_id, later_at)):
        partition, offset = where[app_id]
        ahead = [at for p, o, at in watermarks_in(log) if p == partition and o < offset]
        assert all(at <= place for at in ahead), f"a watermark before {app_id} on its partition passed its place"


async def test_a_receipt_kept_waiting_past_the_claim_bound_takes_the_claims_time_less_the_bound(
    intake: IntakeProcess, tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    """A claim waits for the watermark's lock (held here far longer than a watermark holds it) past the
    claim bound: a watermark may meanwhile have passed its arrival, so the receipt keeps the claim's
    time less the bound, and the event carries the same."""
    title = f"Testvorhaben {uuid.uuid4().hex[:12]}"
    blocker = await asyncpg.connect(intake.dsn)
    try:
        async with blocker.transaction():
            await blocker.execute("SELECT pg_advisory_xact_lock(7316103)")
            sent = datetime.now(UTC)
            waiting = asyncio.create_task(
                http.post("/v1/applications", json=sample_application(title=title), headers=auth(tokens["portal-a"]))
            )
            await asyncio.sleep(1.5)
            released = datetime.now(UTC)
    finally:
        await blocker.close()
    answer = await waiting
    assert answer.status_code == 202, answer.text
    kept = datetime.fromisoformat(answer.json()["received_at"])
    assert released - timedelta(milliseconds=600) < kept < released + timedelta(seconds=1)
    assert kept > sent + timedelta(milliseconds=800), "not the moment the request arrived"
    seen = await read_topic(intake.kafka, APPLICATIONS, lambda es: any(map(received_with_title(title), es)))
    [event] = [e.payload(ApplicationReceived) for e in seen if received_with_title(title)(e)]
    assert event.received_at == kept


async def test_a_submission_given_up_past_the_hold_is_looked_for_on_the_log_then_restamped(
    intake: IntakeProcess, tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    """Its first request claimed 80 s ago and never heard back (the broker may have taken it): past the
    hold the topic would refuse that record, so the retry reads the log, does not find it, and publishes
    the submission with a new receipt time and event id, never the old time behind a watermark."""
    key, body = str(uuid.uuid4()), sample_application()
    stale = datetime.now(UTC) - timedelta(seconds=80)
    app_id, old_event = f"TH-EGOV-{stale.year}-{900_000 + uuid.uuid4().int % 99_999:06d}", str(uuid.uuid4())
    conn = await asyncpg.connect(intake.dsn)
    try:
        await conn.execute(
            "INSERT INTO idempotency_keys (portal_id, idempotency_key, body_sha256, application_id, event_id,"
            " received_at, created_at) VALUES ('portal-a', $1, $2, $3, $4, $5, $5)",
            key,
            body_digest(body),
            app_id,
            old_event,
            stale,
        )
        await conn.execute(
            "INSERT INTO pending_claims (application_id, applicant_ags, fiscal_years, claimed_at, received_at)"
            " VALUES ($1, $2, '{2027}', $3, $3)",
            app_id,
            body["applicant"]["ags"],
            stale,
        )
        retry = await http.post(
            "/v1/applications", json=body, headers={**auth(tokens["portal-a"]), "Idempotency-Key": key}
        )
        assert retry.status_code == 202, retry.text
        assert retry.json()["application_id"] == app_id
        restamped = datetime.fromisoformat(retry.json()["received_at"])
        assert restamped > stale + timedelta(seconds=70)
        assert not await conn.fetchval("SELECT count(*) FROM pending_claims WHERE application_id = $1", app_id)
    finally:
        await conn.close()
    seen = await read_topic(intake.kafka, APPLICATIONS, lambda es: any(e.subject == app_id for e in es))
    [event] = [e for e in seen if e.subject == app_id]
    assert event.id != old_event
    assert event.payload(ApplicationReceived).received_at == restamped
    assert await landed(intake.kafka, APPLICATIONS, event, APPLICATIONS.partitions)


# --- the broker away and back (last: it stops the module's broker) ------------------------------------


async def test_broker_stopped_gives_503_and_accepts_nothing_broker_back_accepts_again(
    intake: IntakeProcess, tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    headers = auth(tokens["portal-b"])
    pending = (await http.post("/v1/applications", json=marked()[0], headers=headers)).json()["application_id"]
    kafka_sh("stop")
    try:
        lost, lost_title = marked()
        keyed, keyed_title = marked()
        key = {"Idempotency-Key": str(uuid.uuid4())}
        started = time.monotonic()
        refused = await http.post("/v1/applications", json=lost, headers=headers)
        assert refused.status_code == 503, refused.text
        assert time.monotonic() - started < PUBLISH_TIMEOUT_MS / 1000 + 1.5
        assert refused.json()["code"] == "broker.outcome_unknown"
        assert int(refused.headers["retry-after"]) > 0
        assert (await http.post("/v1/applications", json=keyed, headers={**headers, **key})).status_code == 503
        withdrawal = await http.post(f"/v1/applications/{pending}/withdrawal", headers=headers)
        assert withdrawal.status_code == 503
        assert (await http.get("/ready")).status_code == 503
        listed = (await http.get("/v1/applications", params={"limit": 200}, headers=headers)).json()["items"]
        assert {i["application_id"]: i["status"] for i in listed}[pending] == "received"
    finally:
        kafka_sh("start")

    deadline = time.monotonic() + 60
    while (back := await http.post("/v1/applications", json=marked()[0], headers=headers)).status_code == 503:
        assert time.monotonic() < deadline, "submissions did not succeed after the broker came back"
        await asyncio.sleep(0.5)
    assert back.status_code == 202, back.text
    retried = await http.post("/v1/applications", json=keyed, headers={**headers, **key})
    assert retried.status_code == 202, "the same key after a 503 finishes the original submission"
    assert (await http.post(f"/v1/applications/{pending}/withdrawal", headers=headers)).status_code == 202

    back_id, retried_id = back.json()["application_id"], retried.json()["application_id"]
    await read_topic(intake.kafka, APPLICATIONS, lambda es: {back_id, retried_id} <= {e.subject for e in es})
    await asyncio.sleep(2)  # anything the producer still held would have been delivered by now
    seen = await read_topic(intake.kafka, APPLICATIONS, lambda es: False, timeout=2)
    assert not [e for e in seen if received_with_title(lost_title)(e)], "a 503 left nothing behind"
    assert {e.id for e in seen if received_with_title(keyed_title)(e)} == {
        next(e.id for e in seen if e.subject == retried_id)
    }, "the retried key published one event, with its original id"
