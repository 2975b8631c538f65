"""The document routes: a portal uploads an announced attachment (``Uploads`` does the work); the
review service reads an arrived one, to stream it through to a caseworker (internal, its own credential)."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.
import base64
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict

from runtime.problems import Problem
from services.intake.metrics import count_refused
from services.intake.policy import PortalAccess
from services.intake.uploads import RequestedUpload

if TYPE_CHECKING:
    from services.intake.uploads import StoredDocument, Uploads

RequestId = Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{1,64}$", description="The request's id, from the timeline")]

ATTACHMENTS_MAX = 50  # FundingApplication.attachments


class AttachmentReceipt(BaseModel):
    """An announced attachment that arrived and matched its announcement."""

    model_config = ConfigDict(frozen=True)

    application_id: str
    attachment: int
    file_name: str
    kind: str
    media_type: str
    size_bytes: int
    digest: str
    arrived_at: datetime


class RequestedDocumentReceipt(BaseModel):
    """A requested document that arrived and matched what its upload declared."""

    model_config = ConfigDict(frozen=True)

    application_id: str
    request_id: str
    document: int
    file_name: str
    kind: str
    media_type: str
    size_bytes: int
    digest: str
    arrived_at: datetime


DOCUMENTS_REQUESTED_MAX = 20  # DocumentsRequest.documents on review

UPLOAD_PROBLEMS = {
    404: "No such application for this portal (another portal's application looks the same), "
    "or no attachment announced at this position",
    409: "`application.closed`: the application is decided or withdrawn",
    413: "`document.too_large`: more bytes than announced (Content-Length or the body itself)",
    415: "`document.media_type_not_allowed` (the rules file does not accept the announced type) or "
    "`document.media_type_mismatch` (Content-Type is not the announced media type)",
    422: "`document.size_mismatch` or `document.digest_mismatch`: the bytes are not the announced ones; "
    "nothing was stored",
}


REQUESTED_PROBLEMS = {
    400: "`document.digest_required`: send `Content-Digest` (RFC 9530) with a sha-256 or sha-512 digest",
    404: "`document_request.not_found`: no such request for this portal's application, or no document "
    "requested at this position",
    409: "`application.closed` (decided or withdrawn), or `document.already_supplied`: other bytes arrived "
    "for this position already",
    411: "`request.length_required`: the size is part of the check",
    413: "`document.too_large`: more bytes than Content-Length",
    415: "`document.media_type_not_allowed`: the rules file does not accept the Content-Type",
    422: "`document.size_mismatch`, `document.digest_mismatch` (nothing was stored) or `document.invalid`",
}
READ_PROBLEMS = {
    401: "`auth.required`: the review service's credential is missing or wrong (portals have none)",
    404: "`attachment.not_found`: no such application, no attachment announced at this position, or it has not arrived",
}


def repr_digest(digest: str) -> str:
    """An announced "sha256:<hex>" as an RFC 9530 Repr-Digest field: sha-256=:<base64>:."""
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm.replace('sha', 'sha-')}=:{base64.b64encode(bytes.fromhex(hexdigest)).decode()}:"


def streamed(stored: "StoredDocument | None") -> StreamingResponse:
    if stored is None:
        raise Problem(404, "attachment.not_found", "No such document has arrived")
    announced = stored.announced
    headers = {
        "Content-Length": str(announced.size_bytes),
        "Repr-Digest": repr_digest(announced.digest),
        "Cache-Control": "no-store",
    }
    return StreamingResponse(stored.chunks, media_type=announced.media_type, headers=headers)


def content_length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if not declared.isdigit():
        raise Problem(400, "request.bad", "Content-Length is not a number")
    return int(declared)


def add_document_routes(
    app: FastAPI,
    uploads: "Callable[[], Uploads]",
    portal: Callable[..., Awaitable[PortalAccess]],
    problems: Callable[[dict[int, str]], dict[int | str, dict[str, Any]]],
    review_service: Callable[..., Awaitable[str]],
) -> None:
    """``portal`` and ``review_service`` are the API's authentication dependencies; ``uploads`` is read
    per request, so the OpenAPI document can be built without a running service."""
    Portal = Annotated[PortalAccess, Depends(portal)]
    ReviewService = Annotated[str, Depends(review_service)]

    @app.put(
        "/v1/applications/{application_id}/requests/{request_id}/documents/{document}",
        summary="Upload a document a caseworker requested",
        description="Answers an `application.documents_requested` (its `request_id` and the kinds it asks for "
        "are in the application's timeline); `document` is the position of the kind in that list (from 0). "
        "Nothing was announced for it, so the request's headers announce it: `Content-Type` (a format the "
        "rules accept), `Content-Length` and `Content-Digest` (RFC 9530, `sha-256=:<base64>:`); the bytes "
        "must match, else nothing is stored. Repeating an upload with the same bytes gets the same answer. "
        "When the last requested document arrived the application is complete again: that time is its "
        "new place in line, and the case goes back to the caseworker.",
        tags=["applications"],
        responses={
            200: {"model": RequestedDocumentReceipt, "description": "Arrived and verified (a repeat: the same answer)"},
            **problems(REQUESTED_PROBLEMS),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def upload_requested_document(
        application_id: str,
        request_id: RequestId,
        document: Annotated[int, Path(ge=0, lt=DOCUMENTS_REQUESTED_MAX)],
        request: Request,
        portal: Portal,
        file_name: Annotated[str, Query(min_length=1, max_length=255, description="The document's file name")],
    ) -> RequestedDocumentReceipt:
        from services.intake.api import plausible_id  # the API module imports this one

        if not plausible_id(application_id):
            raise Problem(404, "application.not_found", "No such application for this portal")
        declared = RequestedUpload(
            file_name,
            request.headers.get("content-type"),
            content_length(request),
            request.headers.get("content-digest"),
        )
        try:
            target = (application_id, request_id, document)
            receipt = await uploads().receive_requested(portal, target, declared, request.stream())
        except Problem as problem:
            count_refused("http", problem.code)
            raise
        return RequestedDocumentReceipt.model_validate(receipt)

    @app.get(
        "/internal/v1/applications/{application_id}/requests/{request_id}/documents/{document}",
        summary="An arrived requested document's bytes, for the review service",
        description="Internal, like the attachments' route: only the review service's credential is accepted.",
        tags=["internal"],
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "The document's bytes, as declared on upload (media type, size)",
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            },
            **problems(READ_PROBLEMS),
        },
    )
    async def read_requested_document(
        application_id: str,
        request_id: RequestId,
        document: Annotated[int, Path(ge=0, lt=DOCUMENTS_REQUESTED_MAX)],
        _: ReviewService,
    ) -> StreamingResponse:
        return streamed(await uploads().stored_requested(application_id, request_id, document))

    @app.get(
        "/internal/v1/applications/{application_id}/attachments/{attachment}",
        summary="An arrived attachment's bytes, for the review service",
        description="Internal: only the review service's credential is accepted. Review streams the bytes "
        "through to caseworkers (`GET /v1/cases/{application_id}/documents/{n}` on review), so each "
        "service keeps its own database. The body is streamed a chunk at a time; `Repr-Digest` carries "
        "the announced digest the bytes were verified against on arrival.",
        tags=["internal"],
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "The attachment's bytes, as announced (media type, size)",
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            },
            **problems(READ_PROBLEMS),
        },
    )
    async def read_attachment(
        application_id: str, attachment: Annotated[int, Path(ge=0, lt=ATTACHMENTS_MAX)], _: ReviewService
    ) -> StreamingResponse:
        return streamed(await uploads().stored(application_id, attachment))

    @app.put(
        "/v1/applications/{application_id}/attachments/{attachment}",
        summary="Upload an announced attachment",
        description="The body is the attachment's bytes, streamed; `attachment` is its position in the "
        "application's `attachments` (from 0). Content-Type must be the announced media type, which the "
        "rules file must accept; size and digest must be the announced ones, else nothing is stored. "
        "Repeating an upload with the same bytes gets the same answer. An application is complete once "
        "every announced attachment arrived.",
        responses={
            200: {"model": AttachmentReceipt, "description": "Arrived and verified (a repeat: the same answer)"},
            **problems(UPLOAD_PROBLEMS),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def upload_attachment(
        application_id: str,
        attachment: Annotated[int, Path(ge=0, lt=ATTACHMENTS_MAX)],
        request: Request,
        portal: Portal,
    ) -> AttachmentReceipt:
        from services.intake.api import plausible_id  # the API module imports this one

        if not plausible_id(application_id):
            raise Problem(404, "application.not_found", "No such application for this portal")
        headers = (request.headers.get("content-type"), content_length(request))
        try:
            receipt = await uploads().receive(portal, application_id, attachment, headers, request.stream())
        except Problem as problem:
            count_refused("http", problem.code)
            raise
        return AttachmentReceipt.model_validate(receipt)
