"""The caseworker queue over HTTP (caseworker role, bearer token per caseworker).

List the cases that need a person (oldest receipt first), see one case with the automatic
findings, decide eligible or ineligible with a written justification, confirm a colleague's
proposal (four eyes), or ask the municipality for missing documents. Every action is an event
naming the caseworker, staged in the same transaction as the case's new state.
"""

# No ``from __future__ import annotations``: FastAPI must see the route-local ``Caseworker`` dependency.
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from runtime.commands import Command, CommandRunner
from runtime.idempotency import Answer, IdempotencyKey, fingerprint, once
from runtime.openapi import ApiDescription, Responses, serve
from runtime.outbox import Outgoing
from runtime.problems import Problem, bearer_required, install_problem_handlers
from schemas.application import Attachment, FundingApplication
from schemas.events import ApplicationReceived, ReviewOutcome, RuleFinding
from services.review import caseworker_commands, store
from services.review.casework import AWAITING_A_PERSON, CaseStatus, Decision, case_not_found
from services.review.caseworker_commands import Done
from services.review.documents import DocumentUnavailable, IntakeDocuments, content_disposition

REALM = "egov-review"
ApplicationId = Annotated[str, Path(pattern=r"^TH-EGOV-[0-9]{4}-[0-9]{6,}$")]
DocumentKind = Annotated[str, Field(pattern=r"^[a-z0-9_]{1,40}$")]
DESCRIPTION = ApiDescription("review", 8002, {"cases": "The caseworker queue: cases that need a person"})
NOT_FOUND: Responses = {404: {"description": "`case.not_found`: no case needs a person for this application"}}
ACTION_REFUSED: Responses = {
    **NOT_FOUND,
    403: {"description": "`review.four_eyes_same_caseworker`: a second, different caseworker must confirm"},
    409: {
        "description": "`case.already_decided`, `case.no_proposal`, or `idempotency.key_reused`: "
        "the Idempotency-Key was used for another request"
    },
}


class CaseSummary(BaseModel):
    application_id: str
    status: CaseStatus
    received_at: datetime
    reviewed_at: datetime
    category: str
    amount_cents: int
    rules_version: str
    four_eyes: bool = Field(description="Above the threshold: a second caseworker must confirm")
    early_start_requested: bool
    proposed_by: str | None = None


class CaseQueue(BaseModel):
    cases: list[CaseSummary]


class ActionRecord(BaseModel):
    action: str
    caseworker: str
    at: datetime
    event_id: str
    detail: dict[str, Any]


class CaseDocument(BaseModel):
    """An attachment the application announced (the case exists only once every one arrived and
    matched its announced size and digest), or a document supplied on request (matched the digest
    its upload declared): each is verified."""

    position: int = Field(description="Its place in the application's `attachments`: the `n` of `href`")
    kind: str
    file_name: str
    media_type: str
    size_bytes: int
    digest: str = Field(description="The verified digest, as announced (`sha256:<hex>`)")
    href: str = Field(description="Where a caseworker reads its bytes")
    request_id: str | None = Field(default=None, description="Supplied on this document request; none: announced")


class CaseView(CaseSummary):
    automatic_outcome: ReviewOutcome
    findings: list[RuleFinding] = Field(description="The automatic review's finding for every rule")
    decided_outcome: ReviewOutcome | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    application: FundingApplication
    documents: list[CaseDocument] = Field(
        default_factory=list, description="The application's documents, each verified on arrival"
    )
    history: list[ActionRecord]


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["eligible", "ineligible"]
    justification: str = Field(min_length=10, max_length=4000, description="Written justification, in German")
    early_start_permitted: bool | None = Field(
        default=None, description="Required when the case has an early-start request; its own decision"
    )


class DocumentsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: list[DocumentKind] = Field(min_length=1, max_length=20, description="Attachment kinds still missing")
    note: str | None = Field(default=None, max_length=2000, description="A note for the municipality, in German")


class ActionResult(BaseModel):
    application_id: str
    status: CaseStatus
    event_id: str


def _summary(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "application_id": row["application_id"],
        "status": row["status"],
        "received_at": row["received_at"],
        "reviewed_at": row["reviewed_at"],
        "category": row["category"],
        "amount_cents": row["amount_cents"],
        "rules_version": row["rules_version"],
        "four_eyes": row["four_eyes"],
        "early_start_requested": row["early_start"],
        "proposed_by": row["proposed_by"],
    }


@dataclass(frozen=True)
class CaseFile:
    """One of a case's documents: announced with the application, or supplied on request."""

    attachment: Attachment
    request: tuple[str, int] | None = None  # (request id, position in the request) if supplied


def _files(application: FundingApplication, supplied: list[asyncpg.Record]) -> list[CaseFile]:
    """The announced attachments first, then what was supplied on request, in order of arrival."""
    files = [CaseFile(a) for a in application.attachments]
    for r in supplied:
        attachment = Attachment(
            file_name=r["file_name"],
            media_type=r["media_type"],
            size_bytes=r["size_bytes"],
            kind=r["kind"],
            digest=r["digest"],
        )
        files.append(CaseFile(attachment, (r["request_id"], r["document"])))
    return files


def _documents(application_id: str, files: list[CaseFile]) -> list[CaseDocument]:
    return [
        CaseDocument(
            position=n,
            kind=f.attachment.kind,
            file_name=f.attachment.file_name,
            media_type=f.attachment.media_type,
            size_bytes=f.attachment.size_bytes,
            digest=f.attachment.digest,
            href=f"/v1/cases/{application_id}/documents/{n}",
            request_id=f.request[0] if f.request else None,
        )
        for n, f in enumerate(files)
    ]


def _view(row: asyncpg.Record, history: list[asyncpg.Record], supplied: list[asyncpg.Record]) -> CaseView:
    application = ApplicationReceived.model_validate_json(row["received_event"]).application
    return CaseView(
        **_summary(row),
        automatic_outcome=row["automatic_outcome"],
        findings=json.loads(row["findings"]),
        decided_outcome=row["decided_outcome"],
        decided_by=row["decided_by"],
        decided_at=row["decided_at"],
        application=application,
        documents=_documents(row["application_id"], _files(application, supplied)),
        history=[
            ActionRecord(
                action=a["action"],
                caseworker=a["caseworker_id"],
                at=a["at"],
                event_id=a["event_id"],
                detail=json.loads(a["detail"]),
            )
            for a in history
        ],
    )


def build_api(pool: asyncpg.Pool, commands: CommandRunner, documents: IntakeDocuments | None = None) -> FastAPI:
    """``pool`` for reads and tokens; ``commands`` runs each caseworker action in its one transaction;
    ``documents`` reads the bytes caseworkers open from intake."""
    app = FastAPI(
        title="Thüringen E-Government funding: review and caseworker queue",
        version="1.0.0",
        description="Caseworkers decide the cases the automatic review could not, with a written justification.",
    )
    install_problem_handlers(app)
    bearer = HTTPBearer(auto_error=False, description="A caseworker's token, issued by `services.review.caseworkers`")

    async def caseworker(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
        principal = await store.caseworker_for_token(pool, credentials.credentials) if credentials else None
        if principal is None:
            raise bearer_required(REALM, "A valid caseworker token is required")
        return principal

    Caseworker = Annotated[str, Depends(caseworker)]

    async def run(
        command: Command[Done], request: Request, actor: str, key: str | None, body: BaseModel | None = None
    ) -> JSONResponse:
        async def answered(conn: asyncpg.Connection) -> tuple[Answer, Sequence[Outgoing]]:
            done, outgoing = await command(conn)
            result = ActionResult(application_id=done.application_id, status=done.status, event_id=done.event_id)
            return Answer(200, result.model_dump(mode="json")), outgoing

        request_print = fingerprint(request.method, request.url.path, body)
        return (await commands.run(once(answered, actor, key, request_print))).response()

    @app.get("/v1/cases", summary="Cases that need a person, oldest receipt first", tags=["cases"])
    async def list_cases(
        _: Caseworker,
        status: Annotated[list[CaseStatus] | None, Query(description="Default: open and proposed")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> CaseQueue:
        rows = await store.queue(pool, list(status or AWAITING_A_PERSON), limit)
        return CaseQueue(cases=[CaseSummary(**_summary(r)) for r in rows])

    @app.get(
        "/v1/cases/{application_id}",
        summary="One case with its automatic findings and history",
        tags=["cases"],
        responses=NOT_FOUND,
    )
    async def show_case(application_id: ApplicationId, _: Caseworker) -> CaseView:
        async with pool.acquire() as conn:
            row = await store.case_row(conn, application_id)
            if row is None:
                raise case_not_found(application_id)
            return _view(
                row, await store.actions(conn, application_id), await store.supplied_documents(conn, application_id)
            )

    @app.get(
        "/v1/cases/{application_id}/documents/{n}",
        summary="Read one of the case's documents",
        description="The bytes of the application's `n`-th attachment (see `documents` in the case), "
        "streamed from intake's store, with its media type and a `Content-Disposition` naming its file. "
        "Caseworkers only; a portal's token is refused.",
        tags=["cases"],
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "The document, verified against its announced digest on arrival",
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            },
            404: {"description": "`case.not_found`, or `document.not_found`: no document at this position"},
            502: {"description": "`document.unavailable`: intake could not serve it now; try again"},
        },
    )
    async def read_document(
        application_id: ApplicationId, n: Annotated[int, Path(ge=0, lt=50)], _: Caseworker
    ) -> StreamingResponse:
        async with pool.acquire() as conn:
            row = await store.case_row(conn, application_id)
            if row is None:
                raise case_not_found(application_id)
            application = ApplicationReceived.model_validate_json(row["received_event"]).application
            files = _files(application, await store.supplied_documents(conn, application_id))
        if n >= len(files) or documents is None:
            raise Problem(404, "document.not_found", "The case has no document at this position")
        case_file = files[n]
        announced = case_file.attachment
        try:
            if case_file.request is None:
                download = await documents.open(application_id, n)
            else:
                download = await documents.open_requested(application_id, *case_file.request)
        except DocumentUnavailable as unavailable:
            if unavailable.status == 404:
                raise Problem(404, "document.not_found", "The case has no document at this position") from None
            raise Problem(502, "document.unavailable", "The document cannot be read now; try again") from None
        headers = {
            "Content-Disposition": content_disposition(announced.file_name),
            "Content-Length": str(announced.size_bytes),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
            **({"Repr-Digest": download.repr_digest} if download.repr_digest else {}),
        }
        return StreamingResponse(download.chunks, media_type=announced.media_type, headers=headers)

    @app.post(
        "/v1/cases/{application_id}/decision",
        summary="Decide eligible or ineligible (a proposal above the threshold)",
        tags=["cases"],
        response_model=ActionResult,
        responses=ACTION_REFUSED,
    )
    async def decide(
        application_id: ApplicationId,
        body: DecisionRequest,
        actor: Caseworker,
        request: Request,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        decision = Decision(ReviewOutcome(body.outcome), body.justification, actor, body.early_start_permitted)
        command = partial(caseworker_commands.decide, application_id=application_id, decision=decision)
        return await run(command, request, actor, idempotency_key, body)

    @app.post(
        "/v1/cases/{application_id}/confirmation",
        summary="Confirm a colleague's proposal (four eyes)",
        tags=["cases"],
        response_model=ActionResult,
        responses=ACTION_REFUSED,
    )
    async def confirm(
        application_id: ApplicationId, actor: Caseworker, request: Request, idempotency_key: IdempotencyKey = None
    ) -> JSONResponse:
        command = partial(caseworker_commands.confirm, application_id=application_id, caseworker=actor)
        return await run(command, request, actor, idempotency_key)

    @app.post(
        "/v1/cases/{application_id}/document-requests",
        summary="Ask for missing documents; the case waits",
        tags=["cases"],
        response_model=ActionResult,
        responses=ACTION_REFUSED,
    )
    async def request_documents(
        application_id: ApplicationId,
        body: DocumentsRequest,
        actor: Caseworker,
        request: Request,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        async def command(conn: asyncpg.Connection) -> tuple[Done, list[Outgoing]]:
            return await caseworker_commands.request_documents(conn, application_id, actor, body.documents, body.note)

        return await run(command, request, actor, idempotency_key, body)

    serve(app, DESCRIPTION)
    return app
