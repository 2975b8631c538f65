"""RFC 9457 problem details for every HTTP error, with a machine-readable code.

Raise ``Problem`` from a route, or let a domain ``Refused`` pass through;
``install_problem_handlers`` turns it, and any framework error, into
``application/problem+json``. Nothing a client sends may produce a 500, and neither may a database
that is away: every service answers 503 ``database.unavailable`` with ``Retry-After`` then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.responses import Response

from runtime.db import TRANSIENT_ERRORS
from runtime.refusals import Refusal, Refused
from runtime.strict_json import DUPLICATE_KEY, DuplicateMember, loads
from schemas.events import ProblemItem

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://egov.thueringen.de/problems/"
DATABASE_RETRY_AFTER_SECONDS = "5"


class ProblemDocument(BaseModel):
    """The body of every error answer (the OpenAPI documents' shared ``Problem`` schema). Open to
    RFC 9457 extension members, e.g. the ``application_id`` of intake's ``broker.outcome_unknown``."""

    model_config = ConfigDict(extra="allow", title="Problem")

    type: str = Field(description="A URI naming the problem type")
    title: str
    status: int = Field(ge=400, le=599)
    code: str = Field(description="Stable, machine-readable code, e.g. application.invalid")
    detail: str | None = None
    instance: str | None = Field(default=None, description="The request path")
    errors: list[ProblemItem] | None = Field(default=None, description="For invalid input: every error")


class Problem(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str | None = None,
        *,
        errors: Sequence[ProblemItem] = (),
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(title)
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.errors, self.headers = list(errors), dict(headers or {})
        self.extensions = dict(extensions or {})  # RFC 9457 extension members, e.g. the application id

    def response(self, instance: str | None = None) -> JSONResponse:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.code.replace(".", "-"),
            "title": self.title,
            "status": self.status,
            "code": self.code,
        }
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = [e.model_dump() for e in self.errors]
        body.update({name: value for name, value in self.extensions.items() if name not in body})
        return JSONResponse(body, status_code=self.status, headers=self.headers, media_type=PROBLEM_MEDIA_TYPE)


class RepeatedMemberError(HTTPException):
    """Raised while FastAPI reads a body (it passes HTTPExceptions on); answered as a 422 problem."""

    def __init__(self, member: DuplicateMember) -> None:
        super().__init__(422, str(member))
        self.member = member


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = loads(await self.body())
            except DuplicateMember as member:
                raise RepeatedMemberError(member) from None
        return self._json


class StrictJsonRoute(APIRoute):
    """A route whose JSON body is read by ``runtime.strict_json``: a repeated member is a 422 problem
    (``body.duplicate_key`` with its pointer), not the last one's value."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict


# The one place a domain refusal becomes an HTTP status.
REFUSAL_STATUS = {Refusal.NOT_FOUND: 404, Refusal.CONFLICT: 409, Refusal.FORBIDDEN: 403, Refusal.INVALID: 422}


def bearer_required(realm: str, title: str, *, invalid_token: bool = False) -> Problem:
    """401 with the RFC 6750 challenge: no usable token (``auth.required``), or (``invalid_token``) one
    that is unknown or revoked (``auth.invalid_token``)."""
    if invalid_token:
        return Problem(401, "auth.invalid_token", title, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return Problem(401, "auth.required", title, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})


_STATUS_CODES = {
    400: "request.bad",
    401: "auth.required",
    403: "auth.forbidden",
    404: "resource.not_found",
    405: "request.method_not_allowed",
    409: "request.conflict",
    413: "request.too_large",
    415: "request.unsupported_media_type",
    422: "request.invalid",
    429: "request.rate_limited",
}


def database_unavailable() -> Problem:
    return Problem(
        503,
        "database.unavailable",
        "The request could not be handled now; retry later",
        headers={"Retry-After": DATABASE_RETRY_AFTER_SECONDS},
    )


async def store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The database is away (restarting, overloaded, unreachable): the client may retry."""
    log.warning("database unavailable", extra={"route": request.url.path, "error_type": type(exc).__name__})
    return database_unavailable().response(request.url.path)


def install_problem_handlers(app: FastAPI) -> None:
    """Every error a problem document. Call it before adding routes: those read their JSON bodies with
    ``runtime.strict_json``, so a member named twice is a 422 with its pointer, not the last one's value."""
    app.router.route_class = StrictJsonRoute
    for transient in TRANSIENT_ERRORS:
        if issubclass(transient, Exception):
            app.add_exception_handler(transient, store_unavailable)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return exc.response(request.url.path)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> JSONResponse:
        return Problem(REFUSAL_STATUS[exc.kind], exc.code, str(exc)).response(request.url.path)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc, RepeatedMemberError):
            member = exc.member
            errors = [ProblemItem(code=DUPLICATE_KEY, pointer=member.pointer, detail=str(member))]
            return Problem(422, "request.invalid", "The request is invalid", errors=errors).response(request.url.path)
        code = _STATUS_CODES.get(exc.status_code, "request.error")
        return Problem(exc.status_code, code, str(exc.detail)).response(request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            ProblemItem(code="field.invalid", pointer="/" + "/".join(map(str, e["loc"][1:])), detail=e["msg"])
            for e in exc.errors()
        ]
        return Problem(422, "request.invalid", "The request is invalid", errors=errors).response(request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"route": request.url.path})
        return Problem(500, "server.error", "Internal error").response(request.url.path)
