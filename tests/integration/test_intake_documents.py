"""Attachments uploaded to intake and checked against their announcement, against the real broker and database.

Intake runs as a process against its private broker, as in test_intake_api (whose fixtures this module
borrows); what the documents store holds is read back from intake's own database.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from schemas.envelope import Envelope
from schemas.events import ApplicationCompleted, DocumentsRequested, DocumentsSupplied
from schemas.topics import APPLICATIONS, REVIEWS
from services.intake.documents_store import CHUNK_BYTES, PostgresDocuments
from tests.integration import test_intake_api as intake_api
from tests.integration.test_intake_api import BASE_URL, IntakeProcess, auth, publish, records
from tests.support import attachment_bytes, sample_application, upload_attachments

pytestmark = pytest.mark.integration

# test_intake_api's intake process, broker and portals, used by name.
own_broker = intake_api.own_broker
intake = intake_api.intake
tokens = intake_api.tokens
http = intake_api.http

MIB = 1024 * 1024


def announced(data: bytes, media_type: str = "application/pdf", kind: str = "cost_plan") -> dict[str, Any]:
    return {
        "file_name": f"{kind}.pdf",
        "media_type": media_type,
        "size_bytes": len(data),
        "kind": kind,
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
    }


async def submit(http: httpx.AsyncClient, token: str, attachments: list[dict[str, Any]] | None = None) -> str:
    body = sample_application()
    if attachments is not None:
        body["attachments"] = attachments
    response = await http.post("/v1/applications", json=body, headers=auth(token))
    assert response.status_code == 202, response.text
    return str(response.json()["application_id"])


async def put(
    http: httpx.AsyncClient, token: str, application_id: str, n: int, content: Any, media_type: str = "application/pdf"
) -> httpx.Response:
    return await http.put(
        f"/v1/applications/{application_id}/attachments/{n}",
        content=content,
        headers={**auth(token), "Content-Type": media_type},
    )


async def stored(dsn: str, digest: str) -> tuple[int, int]:
    """How many documents rows and chunks the store holds under ``digest``."""
    conn = await asyncpg.connect(dsn)
    try:
        documents = await conn.fetchval("SELECT count(*) FROM documents WHERE digest = $1", digest)
        chunks = await conn.fetchval("SELECT count(*) FROM document_chunks WHERE digest = $1", digest)
        return documents, chunks
    finally:
        await conn.close()


async def streamed(data: bytes, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    """A body without Content-Length (chunked): intake must count the bytes itself."""
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


async def headers_only(path: str, token: str, content_length: int) -> tuple[int, str]:
    """A PUT that declares ``content_length`` and sends no body: the answer must come without one."""
    host, port = BASE_URL.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            f"PUT {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/pdf\r\nContent-Length: {content_length}\r\n\r\n".encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(
            next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        body = json.loads(await asyncio.wait_for(reader.readexactly(length), 10))
        return int(head.split()[1]), str(body["code"])
    finally:
        writer.close()


async def completions(intake: IntakeProcess, application_id: str) -> list[Envelope]:
    """The application.completed events of the application on the topic, waiting a little for the first."""
    key = application_id.encode()
    seen = await records(
        intake.kafka, APPLICATIONS, lambda rs: any(r.key == key and b"completed" in r.value for r in rs)
    )
    envelopes = [Envelope.from_bytes(r.value) for r in seen if r.key == key]
    return [e for e in envelopes if e.is_a(ApplicationCompleted)]


async def timeline_types(http: httpx.AsyncClient, token: str, application_id: str) -> list[str]:
    """The status view's timeline once it shows the completion (it is a projection: it may lag)."""
    types: list[str] = []
    for _ in range(50):
        status = await http.get(f"/v1/applications/{application_id}", headers=auth(token))
        types = [entry["type"] for entry in status.json()["timeline"]]
        if ApplicationCompleted.event_type in types:
            break
        await asyncio.sleep(0.2)
    return types


async def test_the_demo_attachments_arrive_verified_and_a_repeat_gets_the_same_answer(
    intake: IntakeProcess, tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    application = sample_application()
    response = await http.post("/v1/applications", json=application, headers=auth(tokens["portal-a"]))
    application_id = response.json()["application_id"]

    first = await upload_attachments(application_id, application, tokens["portal-a"], str(http.base_url))
    again = await upload_attachments(application_id, application, tokens["portal-a"], str(http.base_url))

    assert first == again
    assert [a["digest"] for a in first] == [a["digest"] for a in application["attachments"]]
    assert [a["kind"] for a in first] == ["cost_plan", "project_description"]
    for attachment in application["attachments"]:
        assert await stored(intake.dsn, attachment["digest"]) == (1, 1)
    # Complete once, when the last attachment arrived, however often the uploads are repeated.
    completed = await completions(intake, application_id)
    assert len(completed) == 1
    event = completed[0].payload(ApplicationCompleted)
    last_arrival = datetime.fromisoformat(first[-1]["arrived_at"])
    assert event.completed_at == last_arrival == completed[0].time
    assert event.attachments == 2
    assert ApplicationCompleted.event_type in await timeline_types(http, tokens["portal-a"], application_id)


async def test_a_document_of_several_chunks_is_stored_once_and_read_back_whole(
    intake: IntakeProcess, tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    data = hashlib.sha512(b"seed").digest() * (5 * MIB // 128)  # 2.5 MiB and a tail: not whole chunks
    data += b"tail"
    attachment = announced(data)
    one = await submit(http, tokens["portal-a"], [attachment])
    other = await submit(http, tokens["portal-a"], [attachment])  # the same document, announced twice

    assert (await put(http, tokens["portal-a"], one, 0, streamed(data))).status_code == 200
    assert (await put(http, tokens["portal-a"], other, 0, data)).status_code == 200

    assert await stored(intake.dsn, attachment["digest"]) == (1, -(-len(data) // CHUNK_BYTES))
    pool = await asyncpg.create_pool(intake.dsn, min_size=1, max_size=1)
    try:
        read = b"".join([chunk async for chunk in PostgresDocuments(pool).read(attachment["digest"])])
    finally:
        await pool.close()
    assert read == data


async def test_bytes_that_do_not_match_the_digest_are_refused_and_nothing_is_stored(
    intake: IntakeProcess, tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    data = b"%PDF-1.4 Kostenplan " * 100_000  # 2 MB: some chunks would be written before the end
    attachment = announced(data)
    application_id = await submit(http, tokens["portal-a"], [attachment])
    tampered = data[:-1] + b"!"

    response = await put(http, tokens["portal-a"], application_id, 0, tampered)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "document.digest_mismatch"
    assert await stored(intake.dsn, attachment["digest"]) == (0, 0)
    # The right bytes are still welcome afterwards.
    assert (await put(http, tokens["portal-a"], application_id, 0, data)).status_code == 200


async def test_more_or_fewer_bytes_than_announced_are_refused(
    intake: IntakeProcess, tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    data = b"x" * 1000
    application_id = await submit(http, tokens["portal-a"], [announced(data)])
    token = tokens["portal-a"]

    declared_more = await put(http, token, application_id, 0, data + b"y")
    streamed_more = await put(http, token, application_id, 0, streamed(data + b"y", piece=100))
    fewer = await put(http, token, application_id, 0, streamed(data[:-1], piece=100))

    assert (declared_more.status_code, declared_more.json()["code"]) == (413, "document.too_large")
    assert (streamed_more.status_code, streamed_more.json()["code"]) == (413, "document.too_large")
    assert (fewer.status_code, fewer.json()["code"]) == (422, "document.size_mismatch")
    assert await stored(intake.dsn, announced(data)["digest"]) == (0, 0)


async def test_100_mib_may_be_announced_and_one_byte_more_is_refused(
    tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    limit = {**announced(b"x"), "size_bytes": 100 * MIB}
    application_id = await submit(http, tokens["portal-a"], [limit])
    over = sample_application()
    over["attachments"] = [{**limit, "size_bytes": 100 * MIB + 1}]

    refused = await http.post("/v1/applications", json=over, headers=auth(tokens["portal-a"]))
    # Declared one byte over the announced 100 MiB: refused before a byte of the body is sent.
    status, code = await headers_only(
        f"/v1/applications/{application_id}/attachments/0", tokens["portal-a"], 100 * MIB + 1
    )

    assert refused.status_code == 422
    assert [e["pointer"] for e in refused.json()["errors"]] == ["/attachments/0/size_bytes"]
    assert (status, code) == (413, "document.too_large")


async def test_media_types_must_be_allowed_by_the_rules_and_be_the_announced_one(
    tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    data = b"PK\x03\x04 zip bytes"
    application_id = await submit(http, tokens["portal-a"], [announced(data, "application/zip"), announced(data)])

    not_allowed = await put(http, tokens["portal-a"], application_id, 0, data, "application/zip")
    other_type = await put(http, tokens["portal-a"], application_id, 1, data, "image/png")
    with_parameters = await put(http, tokens["portal-a"], application_id, 1, data, "Application/PDF; name=x.pdf")

    assert (not_allowed.status_code, not_allowed.json()["code"]) == (415, "document.media_type_not_allowed")
    assert (other_type.status_code, other_type.json()["code"]) == (415, "document.media_type_mismatch")
    assert with_parameters.status_code == 200, with_parameters.text


async def test_another_portals_application_and_an_unannounced_attachment_are_not_found(
    intake: IntakeProcess, tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    application = sample_application()
    response = await http.post("/v1/applications", json=application, headers=auth(tokens["portal-a"]))
    application_id = response.json()["application_id"]
    cost_plan = attachment_bytes(application["attachments"][0])

    foreign = await put(http, tokens["portal-b"], application_id, 0, cost_plan)
    unannounced = await put(http, tokens["portal-a"], application_id, 2, cost_plan)
    malformed = await put(http, tokens["portal-a"], "TH-EGOV-2027-x", 0, cost_plan)
    anonymous = await http.put(f"/v1/applications/{application_id}/attachments/0", content=cost_plan)

    assert (foreign.status_code, foreign.json()["code"]) == (404, "application.not_found")
    assert (unannounced.status_code, unannounced.json()["code"]) == (404, "attachment.not_found")
    assert malformed.status_code == 404
    assert anonymous.status_code == 401
    # The refused upload from the other portal stored nothing for this application.
    conn = await asyncpg.connect(intake.dsn)
    try:
        assert (
            await conn.fetchval("SELECT count(*) FROM attachment_arrivals WHERE application_id = $1", application_id)
            == 0
        )
    finally:
        await conn.close()


# --- the review service reads documents; documents requested by a caseworker ----------------------

REVIEW_SERVICE = {"Authorization": "Bearer review-service-dev-only"}  # INTAKE_REVIEW_TOKEN's development value


async def test_only_the_review_service_reads_an_arrived_attachment_and_it_comes_whole(
    intake: IntakeProcess, tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    application = sample_application()
    application_id = await submit(http, tokens["portal-a"])
    path = f"/internal/v1/applications/{application_id}/attachments/0"
    assert (await http.get(path, headers=REVIEW_SERVICE)).status_code == 404, "nothing arrived yet"
    await upload_attachments(application_id, application, tokens["portal-a"], str(http.base_url))

    read = await http.get(path, headers=REVIEW_SERVICE)
    assert read.status_code == 200, read.text
    assert read.content == attachment_bytes(application["attachments"][0])
    assert read.headers["content-type"] == "application/pdf"
    assert read.headers["content-length"] == str(application["attachments"][0]["size_bytes"])
    refused = [
        await http.get(path, headers=auth(tokens["portal-a"])),
        await http.get(path, headers=auth(tokens["portal-b"])),
        await http.get(path),
    ]
    assert [r.status_code for r in refused] == [401, 401, 401], "portals never read documents back"


def content_digest(data: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


async def requested(intake: IntakeProcess, application_id: str, kinds: list[str]) -> str:
    """A caseworker's document request as review publishes it; its event id is the request's id."""
    event = DocumentsRequested(
        application_id=application_id, requested_by="sb-test", documents=kinds, message_de="Bitte nachreichen."
    )
    envelope = Envelope.wrap(event, source="/egov/review", subject=application_id, actor="sb-test")
    await publish(intake.kafka, REVIEWS, application_id, envelope.to_bytes())
    return envelope.id


async def test_requested_documents_arrive_verified_and_the_last_one_makes_the_application_complete_again(
    intake: IntakeProcess, tokens: dict[str, str], http: httpx.AsyncClient
) -> None:
    application = sample_application()
    application_id = await submit(http, tokens["portal-a"])
    await upload_attachments(application_id, application, tokens["portal-a"], str(http.base_url))
    request_id = await requested(intake, application_id, ["cost_plan", "security_concept"])
    for _ in range(50):  # the status view projects the request; the portal finds its id in the timeline
        status = (await http.get(f"/v1/applications/{application_id}", headers=auth(tokens["portal-a"]))).json()
        asked = [t for t in status["timeline"] if t["type"] == "application.documents_requested.v1"]
        if asked:
            break
        await asyncio.sleep(0.2)
    assert asked[0]["detail"] == {"documents": ["cost_plan", "security_concept"], "request_id": request_id}

    plan, concept = b"%PDF-1.4\n% Kostenplan 2\n", b"%PDF-1.4\n% Sicherheitskonzept\n"

    async def put_requested(token: str, n: int, data: bytes, digest_of: bytes | None = None) -> httpx.Response:
        return await http.put(
            f"/v1/applications/{application_id}/requests/{request_id}/documents/{n}",
            params={"file_name": f"nachreichung-{n}.pdf"},
            content=data,
            headers={
                **auth(token),
                "Content-Type": "application/pdf",
                "Content-Digest": content_digest(data if digest_of is None else digest_of),
            },
        )

    foreign = await put_requested(tokens["portal-b"], 0, plan)
    beyond = await put_requested(tokens["portal-a"], 2, plan)
    mismatch = await put_requested(tokens["portal-a"], 0, plan, digest_of=concept)
    assert [(r.status_code, r.json()["code"]) for r in (foreign, beyond, mismatch)] == [
        (404, "document_request.not_found"),
        (404, "document_request.not_found"),
        (422, "document.digest_mismatch"),
    ]
    first = await put_requested(tokens["portal-a"], 0, plan)
    assert first.status_code == 200, first.text
    assert (await put_requested(tokens["portal-a"], 0, plan)).json() == first.json(), "a repeat: the same answer"
    other = await put_requested(tokens["portal-a"], 0, concept)
    assert (other.status_code, other.json()["code"]) == (409, "document.already_supplied")
    last = await put_requested(tokens["portal-a"], 1, concept)
    assert last.status_code == 200, last.text

    key = application_id.encode()
    seen = await records(
        intake.kafka, APPLICATIONS, lambda rs: any(r.key == key and b"documents_supplied" in r.value for r in rs)
    )
    [supplied] = [e for e in (Envelope.from_bytes(r.value) for r in seen if r.key == key) if e.is_a(DocumentsSupplied)]
    payload = supplied.payload(DocumentsSupplied)
    assert payload.request_id == request_id
    assert supplied.causationid == request_id
    assert payload.supplied_at == datetime.fromisoformat(last.json()["arrived_at"]), "the new complete time"
    assert [(d.kind, d.digest) for d in payload.documents] == [
        ("cost_plan", "sha256:" + hashlib.sha256(plan).hexdigest()),
        ("security_concept", "sha256:" + hashlib.sha256(concept).hexdigest()),
    ]
    read = await http.get(
        f"/internal/v1/applications/{application_id}/requests/{request_id}/documents/1", headers=REVIEW_SERVICE
    )
    assert (read.status_code, read.content) == (200, concept)
