"""Documents through the running services: an application is reviewed only once every announced
attachment arrived, its place is that time, and a caseworker reads the documents (streamed from
intake through review) while portals cannot read them at all."""

from __future__ import annotations

import asyncio
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
