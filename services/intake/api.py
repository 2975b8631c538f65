"""The portal-facing HTTP API: submit, list, read and withdraw applications.

Every error is an RFC 9457 problem with a stable code; nothing a client sends produces a 500.
A submission answers 202 only after the broker acknowledged ``application.received`` (acks=all).
"""

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from runtime.openapi import LOCATION, serve
from runtime.problems import Problem, install_problem_handlers
from schemas.events import ProblemItem
from services.intake import store
from services.intake.auth import Portals
from services.intake.documents_api import add_document_routes
from services.intake.domain import pointer
from services.intake.metrics import count_refused
from services.intake.models import (
    ApplicationPage,
    ApplicationState,
    ApplicationStatus,
    Receipt,
    Withdrawal,
    WithdrawalRequest,
)
from services.intake.openapi import DESCRIPTION
from services.intake.policy import PortalAccess
from services.intake.settings import IntakeSettings
from services.intake.submission import Submissions
from services.intake.uploads import Uploads
from services.intake.withdrawals import Withdrawals, not_found

JSON = "application/json"
CATEGORY_PATTERN = r"^[a-z0-9_]{1,40}$"
APPLICATION_ID = re.compile(r"TH-EGOV-[0-9]{4}-[0-9]{6,}")


@dataclass(frozen=True)
class Intake:
    """What the routes need, passed in by the composition root."""

    pool: asyncpg.Pool
    portals: Portals
    submissions: Submissions
    withdrawals: Withdrawals
    settings: IntakeSettings
    uploads: Uploads


async def read_body(request: Request, max_bytes: int, *, required: bool = True) -> bytes:
    """The body, at most ``max_bytes`` (413), JSON only (415); an optional body may be empty."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if required and media_type != JSON:
        raise Problem(415, "request.unsupported_media_type", "Send the body as application/json")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise Problem(413, "request.too_large", f"The body exceeds {max_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise Problem(413, "request.too_large", f"The body exceeds {max_bytes} bytes")
    if body and media_type != JSON:
        raise Problem(415, "request.unsupported_media_type", "Send the body as application/json")
    return bytes(body)


def plausible_id(application_id: str) -> bool:
    """Only well-formed ids reach the database (a NUL byte in a path must be a 404, not a driver error)."""
    return len(application_id) <= 40 and APPLICATION_ID.fullmatch(application_id) is not None


def encode_cursor(received_at: datetime, application_id: str) -> str:
    raw = json.dumps([received_at.isoformat(), application_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        received_at, application_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        after = datetime.fromisoformat(received_at)
        if after.tzinfo is None or not isinstance(application_id, str) or not plausible_id(application_id):
            raise ValueError("cursor fields")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as err:
        raise Problem(400, "request.invalid_cursor", "The cursor is not one this API handed out") from err
    return after, application_id


def withdrawal_reason(body: bytes) -> str | None:
    if not body:
        return None
    try:
        return WithdrawalRequest.model_validate_json(body).reason
    except ValidationError as err:
        errors = [
            ProblemItem(code="field.invalid", pointer=pointer(*e["loc"]), detail=e["msg"])
            for e in err.errors(include_url=False)
        ]
        raise Problem(422, "request.invalid", "The withdrawal request is invalid", errors=errors) from err


NOT_FOUND = "No such application for this portal (another portal's application looks the same)"
COMMON_PROBLEMS = {
    401: "Missing, unknown or revoked portal token",
    422: "Invalid parameters or body: every error, each with a JSON pointer and a code",
    429: "Rate limit of this portal exceeded; see Retry-After",
}


def problems(more: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses: each error status documented as problem details."""
    described = {**COMMON_PROBLEMS, **(more or {})}
    return {status: {"description": text} for status, text in sorted(described.items())}


def build_api(intake: Intake) -> FastAPI:
    app = FastAPI(
        title="Thüringen E-Government funding: application intake",
        version="1.0.0",
        description="Municipal portals submit funding applications, follow their status and withdraw them.",
    )
    install_problem_handlers(app)  # a database that is away answers 503 database.unavailable too
    bearer = HTTPBearer(auto_error=False, description="The portal's token, issued by `services.intake.portals`")

    async def portal(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> PortalAccess:
        return await intake.portals.authenticate(f"Bearer {credentials.credentials}" if credentials else None)

    Portal = Annotated[PortalAccess, Depends(portal)]

    @app.post(
        "/v1/applications",
        status_code=202,
        summary="Submit a funding application",
        tags=["applications"],
        responses={
            202: {
                "model": Receipt,
                "description": "Received: the broker acknowledged the application",
                "headers": LOCATION,
            },
            **problems(
                {
                    403: "The portal may not submit for this applicant",
                    409: "Idempotency-Key reused with another body, or the applicant's quota of open applications"
                    " for a fiscal year is used up",
                    413: "Body too large",
                    415: "Body is not application/json",
                    422: "The application is invalid: every error, each with a JSON pointer and a code",
                    503: "`database.unavailable`: not handled now, retry after Retry-After. "
                    "`broker.outcome_unknown`: the broker did not acknowledge in time, so the application "
                    "(named in `application_id`) may or may not have been accepted. Retry after Retry-After "
                    "with the same Idempotency-Key and body: the answer is then its real outcome (the same "
                    "202 and application id if it was accepted, else it is submitted now), never a second "
                    "application. Without an Idempotency-Key a retry is a new submission: look the "
                    "application id up first.",
                }
            ),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/FundingApplication"}}},
            }
        },
    )
    async def submit(
        request: Request,
        portal: Portal,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                min_length=1,
                max_length=200,
                description="Same key and same body: the original answer. Same key, other body: 409. "
                "Send one with every submission: after a 503 `broker.outcome_unknown` only a retry with the "
                "same key is answered with the submission's real outcome.",
            ),
        ] = None,
    ) -> Response:
        try:
            body = await read_body(request, intake.settings.max_body_bytes)
            receipt = await intake.submissions.submit(portal, body, idempotency_key)
        except Problem as problem:
            count_refused("http", problem.code)
            raise
        # Sorted keys: a replayed answer (read back from jsonb) is byte for byte the original one.
        content = json.dumps(receipt, sort_keys=True, separators=(",", ":"))
        return Response(content, 202, headers={"Location": receipt["status_url"]}, media_type=JSON)

    @app.get(
        "/v1/applications",
        summary="The portal's own applications, oldest first",
        tags=["applications"],
        responses=problems({400: "The cursor is not one this API handed out"}),
    )
    async def list_applications(
        portal: Portal,
        status: ApplicationState | None = None,
        category: Annotated[str | None, Query(pattern=CATEGORY_PATTERN)] = None,
        fiscal_year: Annotated[int | None, Query(ge=2019, le=2100)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=500)] = None,
    ) -> ApplicationPage:
        where = store.ListFilter(status.value if status else None, category, fiscal_year)
        after = decode_cursor(cursor) if cursor else None
        rows = await store.list_applications(intake.pool, portal.portal_id, where, after, limit + 1)
        last = rows[limit - 1] if len(rows) > limit else None
        next_cursor = encode_cursor(last["received_at"], last["application_id"]) if last else None
        return ApplicationPage.model_validate({"items": rows[:limit], "next_cursor": next_cursor})

    @app.get(
        "/v1/applications/{application_id}",
        summary="Status and timeline of one application",
        tags=["applications"],
        responses=problems({404: NOT_FOUND}),
    )
    async def status_of(application_id: str, portal: Portal) -> ApplicationStatus:
        if not plausible_id(application_id):
            raise not_found()
        view = await store.application_view(intake.pool, application_id, portal.portal_id)
        if view is None:
            raise not_found()
        return ApplicationStatus.model_validate(view)

    @app.post(
        "/v1/applications/{application_id}/withdrawal",
        status_code=202,
        summary="Withdraw an application (allowed until it is decided)",
        tags=["applications"],
        responses={
            202: {"model": Withdrawal, "description": "Withdrawn: the broker acknowledged the withdrawal"},
            **problems(
                {
                    404: NOT_FOUND,
                    409: "Already decided, already withdrawn, or a withdrawal is under way",
                    413: "Body too large",
                    415: "Body is not application/json",
                    503: "`broker.outcome_unknown`: the broker did not acknowledge the withdrawal in time, so it "
                    "may or may not have been withdrawn; retry after Retry-After (a repeat is the same "
                    "withdrawal; 409 `application.withdrawn` once it is known to have landed)",
                }
            ),
        },
        openapi_extra={
            "requestBody": {
                "required": False,
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/WithdrawalRequest"}}},
            }
        },
    )
    async def withdraw(application_id: str, request: Request, portal: Portal) -> JSONResponse:
        if not plausible_id(application_id):
            raise not_found()
        reason = withdrawal_reason(await read_body(request, 4096, required=False))
        answer = await intake.withdrawals.withdraw(portal, application_id, reason)
        return JSONResponse(answer, status_code=202)

    add_document_routes(app, lambda: intake.uploads, portal, problems)
    serve(app, DESCRIPTION)
    return app
