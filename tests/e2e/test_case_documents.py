"""Documents through the running services: an application is reviewed only once every announced
attachment arrived, its place is that time, and a caseworker reads the documents (streamed from
intake through review) while portals cannot read them at all."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from runtime.kafka import KafkaAccess
from schemas.events import ApplicationCompleted, ApplicationDecided, ApplicationReviewed, Decision
from schemas.topics import APPLICATIONS, DECISIONS, REVIEWS
from services.intake.documents_api import repr_digest
from tests.conftest import issue_portal_token
from tests.e2e.test_review_queue import EARLY_START, issue_caseworker, review_url
from tests.support import (
    ServiceProcesses,
    attachment_bytes,
    intake_url,
    open_fiscal_year,
    read_topic,
    sample_application,
    upload_with,
)

pytestmark = pytest.mark.e2e


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def submit(http: httpx.AsyncClient, token: str, application: dict[str, Any]) -> str:
    response = await http.post(intake_url("/v1/applications"), json=application, headers=auth(token))
    assert response.status_code == 202, response.text
    return str(response.json()["application_id"])


async def upload_one(http: httpx.AsyncClient, token: str, app_id: str, application: dict[str, Any], n: int) -> str:
    attachment = application["attachments"][n]
    response = await http.put(
        intake_url(f"/v1/applications/{app_id}/attachments/{n}"),
        content=attachment_bytes(attachment),
        headers={**auth(token), "Content-Type": attachment["media_type"]},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["arrived_at"])


async def line_row(budget_dsn: str, app_id: str, timeout: float = 30) -> asyncpg.Record:
    conn = await asyncpg.connect(budget_dsn)
    try:
        deadline = time.monotonic() + timeout
        while (row := await conn.fetchrow("SELECT * FROM line WHERE application_id = $1", app_id)) is None:
            assert time.monotonic() < deadline, f"{app_id} never reached budget's line"
            await asyncio.sleep(0.2)
        return row
    finally:
        await conn.close()


async def test_an_application_is_reviewed_only_once_its_last_attachment_arrived_which_is_its_place(
    services: ServiceProcesses, portal_token: str, kafka: KafkaAccess, service_dsns: dict[str, str]
) -> None:
    await open_fiscal_year(2027, 1_000_000_000)
    application = sample_application()
    async with httpx.AsyncClient(timeout=30) as http:
        app_id = await submit(http, portal_token, application)
        await upload_one(http, portal_token, app_id, application, 0)
        assert (await line_row(service_dsns["budget"], app_id))["status"] == "incomplete", "no place yet"
        await asyncio.sleep(2)  # review would have reviewed a complete application by now
        early = await read_topic(kafka, REVIEWS, lambda _: False, timeout=2)
        assert not [e for e in early if e.subject == app_id], "reviewed before its documents arrived"
        completed_at = await upload_one(http, portal_token, app_id, application, 1)

    def reviewed(seen: list[Any]) -> bool:
        return any(e.subject == app_id and e.is_a(ApplicationReviewed) for e in seen)

    [review] = [e.payload(ApplicationReviewed) for e in await read_topic(kafka, REVIEWS, reviewed) if reviewed([e])]
    assert review.place_at == datetime.fromisoformat(completed_at), "the place is the last arrival"
    completions = [e for e in await read_topic(kafka, APPLICATIONS, lambda _: False, timeout=3) if e.subject == app_id]
    assert [e.payload(ApplicationCompleted).completed_at for e in completions if e.is_a(ApplicationCompleted)] == [
        datetime.fromisoformat(completed_at)
    ]
    decisions = await read_topic(kafka, DECISIONS, lambda seen: any(e.subject == app_id for e in seen))
    [decided] = [e.payload(ApplicationDecided) for e in decisions if e.subject == app_id]
    assert decided.decision is Decision.APPROVED
    row = await line_row(service_dsns["budget"], app_id)
    assert row["place_at"] == datetime.fromisoformat(completed_at)
    assert row["place_at"] > row["received_at"]


async def test_a_caseworker_reads_the_documents_and_a_portal_cannot(
    services: ServiceProcesses, portal_token: str, service_dsns: dict[str, str]
) -> None:
    caseworker = auth(issue_caseworker(service_dsns["review"], "sb-dora"))
    other_portal = await issue_portal_token(service_dsns["intake"], "portal-documents-b")
    application = {**sample_application(), "early_start": EARLY_START}  # a person decides: a case opens
    async with httpx.AsyncClient(timeout=30) as http:
        app_id = await submit(http, portal_token, application)
        await upload_with(http, app_id, application, portal_token, intake_url(""))
        deadline = time.monotonic() + 30
        while (case := await http.get(review_url(f"/v1/cases/{app_id}"), headers=caseworker)).status_code == 404:
            assert time.monotonic() < deadline, "no case was opened"
            await asyncio.sleep(0.2)
        assert case.status_code == 200, case.text
        documents = case.json()["documents"]
        assert [(d["kind"], d["digest"], d["href"]) for d in documents] == [
            (a["kind"], a["digest"], f"/v1/cases/{app_id}/documents/{n}")
            for n, a in enumerate(application["attachments"])
        ]

        for n, attachment in enumerate(application["attachments"]):
            document = await http.get(review_url(documents[n]["href"]), headers=caseworker)
            assert document.status_code == 200, document.text
            assert document.content == attachment_bytes(attachment)
            assert "sha256:" + hashlib.sha256(document.content).hexdigest() == attachment["digest"]
            assert document.headers["content-type"] == attachment["media_type"]
            disposition = document.headers["content-disposition"]
            assert disposition.startswith("attachment;")
            assert f'filename="{attachment["file_name"]}"' in disposition
            assert document.headers["repr-digest"] == repr_digest(attachment["digest"])
            assert document.headers["x-content-type-options"] == "nosniff"

        beyond = await http.get(review_url(f"/v1/cases/{app_id}/documents/{len(documents)}"), headers=caseworker)
        assert (beyond.status_code, beyond.json()["code"]) == (404, "document.not_found")
        internal = intake_url(f"/internal/v1/applications/{app_id}/attachments/0")
        refused = {
            "its portal at review": await http.get(review_url(documents[0]["href"]), headers=auth(portal_token)),
            "another portal at review": await http.get(review_url(documents[0]["href"]), headers=auth(other_portal)),
            "its portal at intake": await http.get(internal, headers=auth(portal_token)),
            "another portal at intake": await http.get(internal, headers=auth(other_portal)),
            "a caseworker at intake": await http.get(internal, headers=caseworker),
            "no one at intake": await http.get(internal),
        }
    assert {who: r.status_code for who, r in refused.items()} == dict.fromkeys(refused, 401)
    assert {r.json()["code"] for r in refused.values()} <= {"auth.required", "auth.invalid_token"}


def content_digest(data: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


async def request_id_of(http: httpx.AsyncClient, token: str, app_id: str, timeout: float = 30) -> str:
    """The document request as the portal sees it: in its application's timeline."""
    deadline = time.monotonic() + timeout
    while True:
        status = (await http.get(intake_url(f"/v1/applications/{app_id}"), headers=auth(token))).json()
        asked = [t for t in status["timeline"] if t["type"] == "application.documents_requested.v1"]
        if asked:
            return str(asked[-1]["detail"]["request_id"])
        assert time.monotonic() < deadline, "the document request never reached the portal's timeline"
        await asyncio.sleep(0.2)


async def test_requested_documents_are_uploaded_the_case_returns_to_the_queue_and_is_decided(
    services: ServiceProcesses, portal_token: str, kafka: KafkaAccess, service_dsns: dict[str, str]
) -> None:
    await open_fiscal_year(2027, 1_000_000_000)
    caseworker = auth(issue_caseworker(service_dsns["review"], "sb-emil"))
    other_portal = await issue_portal_token(service_dsns["intake"], "portal-documents-c")
    application = {**sample_application(), "early_start": EARLY_START}
    budget_plan = b"%PDF-1.4\n% Finanzierungsplan, nachgereicht\n%%EOF\n"
    async with httpx.AsyncClient(timeout=30) as http:
        app_id = await submit(http, portal_token, application)
        await upload_with(http, app_id, application, portal_token, intake_url(""))
        deadline = time.monotonic() + 30
        while (await http.get(review_url(f"/v1/cases/{app_id}"), headers=caseworker)).status_code == 404:
            assert time.monotonic() < deadline, "no case was opened"
            await asyncio.sleep(0.2)
        asked = await http.post(
            review_url(f"/v1/cases/{app_id}/document-requests"),
            json={"documents": ["cost_plan"], "note": "Bitte den aktualisierten Kostenplan nachreichen."},
            headers=caseworker,
        )
        assert asked.status_code == 200, asked.text
        request_id = await request_id_of(http, portal_token, app_id)
        url = intake_url(f"/v1/applications/{app_id}/requests/{request_id}/documents/0")
        params = {"file_name": "kostenplan-2.pdf"}
        pdf = {"Content-Type": "application/pdf"}
        refusals = {
            "no digest": await http.put(url, params=params, content=budget_plan, headers={**auth(portal_token), **pdf}),
            "wrong digest": await http.put(
                url,
                params=params,
                content=budget_plan,
                headers={**auth(portal_token), **pdf, "Content-Digest": content_digest(b"other")},
            ),
            "not allowed": await http.put(
                url,
                params=params,
                content=budget_plan,
                headers={
                    **auth(portal_token),
                    "Content-Type": "text/html",
                    "Content-Digest": content_digest(budget_plan),
                },
            ),
            "another portal": await http.put(
                url,
                params=params,
                content=budget_plan,
                headers={**auth(other_portal), **pdf, "Content-Digest": content_digest(budget_plan)},
            ),
        }
        assert {k: (r.status_code, r.json()["code"]) for k, r in refusals.items()} == {
            "no digest": (400, "document.digest_required"),
            "wrong digest": (422, "document.digest_mismatch"),
            "not allowed": (415, "document.media_type_not_allowed"),
            "another portal": (404, "document_request.not_found"),
        }
        case = (await http.get(review_url(f"/v1/cases/{app_id}"), headers=caseworker)).json()
        assert case["status"] == "waiting_documents", "nothing arrived yet: the case still waits"

        headers = {**auth(portal_token), **pdf, "Content-Digest": content_digest(budget_plan)}
        uploaded = await http.put(url, params=params, content=budget_plan, headers=headers)
        assert uploaded.status_code == 200, uploaded.text
        again = await http.put(url, params=params, content=budget_plan, headers=headers)
        assert again.json() == uploaded.json(), "a repeat gets the same answer"
        supplied_at = datetime.fromisoformat(uploaded.json()["arrived_at"])

        deadline = time.monotonic() + 30
        while (case := (await http.get(review_url(f"/v1/cases/{app_id}"), headers=caseworker)).json())[
            "status"
        ] != "open":
            assert time.monotonic() < deadline, f"the case never came back to the queue: {case['status']}"
            await asyncio.sleep(0.2)
        queue = (await http.get(review_url("/v1/cases"), headers=caseworker)).json()["cases"]
        assert app_id in [c["application_id"] for c in queue], "back in the caseworkers' queue"
        supplied = case["documents"][len(application["attachments"]) :]
        assert [(d["kind"], d["file_name"], d["request_id"]) for d in supplied] == [
            ("cost_plan", "kostenplan-2.pdf", request_id)
        ]
        read = await http.get(review_url(supplied[0]["href"]), headers=caseworker)
        assert (read.status_code, read.content) == (200, budget_plan)
        assert 'filename="kostenplan-2.pdf"' in read.headers["content-disposition"]

        decided = await http.post(
            review_url(f"/v1/cases/{app_id}/decision"),
            json={
                "outcome": "eligible",
                "justification": "Kostenplan nachgereicht, Vorhaben förderfähig.",
                "early_start_permitted": True,
            },
            headers=caseworker,
        )
        assert decided.status_code == 200, decided.text

    decisions = await read_topic(kafka, DECISIONS, lambda seen: any(e.subject == app_id for e in seen), timeout=60)
    [decision] = [e.payload(ApplicationDecided) for e in decisions if e.subject == app_id]
    assert decision.decision is Decision.APPROVED
    on_topic = await read_topic(kafka, REVIEWS, lambda _: False, timeout=3)
    reviews = [e.payload(ApplicationReviewed) for e in on_topic if e.is_a(ApplicationReviewed)]
    [final] = [r for r in reviews if r.application_id == app_id and r.reviewer == "sb-emil"]
    assert final.place_at == supplied_at, "the caseworker's decision carries the new complete time"
    row = await line_row(service_dsns["budget"], app_id)
    assert row["place_at"] == supplied_at, "the line placed it anew at the last requested document's arrival"
