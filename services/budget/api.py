"""Budget administration over HTTP (budget-admin role): open and adjust pots, pause categories,
close a year, see the pots and the waitlist. Every action is an event naming the administrator."""

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, FastAPI, Path, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from runtime.commands import Command, CommandRunner
from runtime.idempotency import Answer, IdempotencyKey, fingerprint, once
from runtime.openapi import ApiDescription, Responses, serve
from runtime.outbox import Outgoing
from runtime.problems import bearer_required, install_problem_handlers
from services.budget import admin, store
from services.budget.line import LineSettings
from services.budget.settings import BudgetSettings

Cents = Annotated[int, Field(strict=True, ge=0, le=10**13)]
Year = Annotated[int, Path(ge=2019, le=2100)]
Category = Annotated[str, Path(pattern=r"^[a-z0-9_]{1,40}$")]
DESCRIPTION = ApiDescription(
    "budget",
    8003,
    {
        "fiscal-years": "Fiscal years and their pots",
        "categories": "Pausing and resuming categories",
        "waitlist": "Applications waiting for money",
    },
)
KEY_REUSED = "`idempotency.key_reused`: the Idempotency-Key was used for another request"
YEAR_NOT_OPEN: Responses = {404: {"description": "`fiscal_year.not_open`: the fiscal year is not open"}}
CATEGORY_REFUSED: Responses = {
    404: {"description": "`category.unknown`: no such category"},
    409: {"description": f"`category.unchanged`: already in that state; or {KEY_REUSED}"},
}


class FiscalYearAnswer(BaseModel):
    fiscal_year: int
    pot_cents: int | None = None
    closed: bool | None = None


class CategoryAnswer(BaseModel):
    category: str
    open: bool


class OpenFiscalYear(BaseModel):
    fiscal_year: int = Field(ge=2019, le=2100)
    pot_cents: Cents


class AdjustPot(BaseModel):
    pot_cents: Cents


def admin_principals(settings: BudgetSettings) -> dict[str, str]:
    tokens = {name: secret.get_secret_value() for name, secret in settings.admin_tokens.items()}
    if settings.admin_token is not None:
        tokens["budget-admin"] = settings.admin_token.get_secret_value()
    return tokens


def answering(
    action: Callable[[asyncpg.Connection], Awaitable[list[Outgoing]]], status: int, body: BaseModel
) -> Command[Answer]:
    """An administration command answers with what it was asked, so only its events matter."""

    async def command(conn: asyncpg.Connection) -> tuple[Answer, list[Outgoing]]:
        outgoing = await action(conn)
        return Answer(status, body.model_dump(mode="json", exclude_none=True)), outgoing

    return command


def build_api(pool: asyncpg.Pool, commands: CommandRunner, settings: BudgetSettings, line: LineSettings) -> FastAPI:
    app = FastAPI(
        title="Thüringen E-Government funding: budget administration",
        version="1.0.0",
        description="Budget administrators open and adjust pots, pause categories, close years and see the line.",
    )
    install_problem_handlers(app)
    bearer = HTTPBearer(auto_error=False, description="A budget administrator's token (`BUDGET_ADMIN_TOKENS`)")

    async def administrator(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
        if credentials is not None:
            for name, expected in admin_principals(settings).items():
                if hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
                    return f"admin:{name}"
        raise bearer_required("egov-budget", "A budget administrator token is required")

    Admin = Annotated[str, Depends(administrator)]

    async def run(
        command: Command[Answer], request: Request, actor: str, key: str | None, body: BaseModel | None = None
    ) -> JSONResponse:
        request_print = fingerprint(request.method, request.url.path, body)
        return (await commands.run(once(command, actor, key, request_print))).response()

    @app.post(
        "/v1/fiscal-years",
        status_code=201,
        summary="Open a fiscal year's pot",
        tags=["fiscal-years"],
        response_model=FiscalYearAnswer,
        responses={409: {"description": f"`fiscal_year.already_open`; or {KEY_REUSED}"}},
    )
    async def open_year(
        command: OpenFiscalYear, actor: Admin, request: Request, idempotency_key: IdempotencyKey = None
    ) -> JSONResponse:
        year, pot_cents = command.fiscal_year, command.pot_cents
        answer = FiscalYearAnswer(fiscal_year=year, pot_cents=pot_cents)
        action = answering(lambda conn: admin.open_fiscal_year(conn, year, pot_cents, actor, line), 201, answer)
        return await run(action, request, actor, idempotency_key, command)

    @app.put(
        "/v1/fiscal-years/{year}/pot",
        summary="Raise or lower a pot (never below what is held)",
        tags=["fiscal-years"],
        response_model=FiscalYearAnswer,
        responses={
            **YEAR_NOT_OPEN,
            409: {"description": "`pot.below_commitments`: below what is earmarked, reserved and committed"},
        },
    )
    async def adjust(year: Year, command: AdjustPot, actor: Admin, request: Request) -> JSONResponse:
        answer = FiscalYearAnswer(fiscal_year=year, pot_cents=command.pot_cents)
        action = answering(lambda conn: admin.adjust_pot(conn, year, command.pot_cents, actor, line), 200, answer)
        return await run(action, request, actor, None)  # a PUT is idempotent by itself

    @app.post(
        "/v1/fiscal-years/{year}/close",
        summary="Close a fiscal year: its money lapses",
        tags=["fiscal-years"],
        response_model=FiscalYearAnswer,
        responses={**YEAR_NOT_OPEN, 409: {"description": KEY_REUSED}},
    )
    async def close(year: Year, actor: Admin, request: Request, idempotency_key: IdempotencyKey = None) -> JSONResponse:
        answer = FiscalYearAnswer(fiscal_year=year, closed=True)
        action = answering(lambda conn: admin.close_fiscal_year(conn, year, actor, line), 200, answer)
        return await run(action, request, actor, idempotency_key)

    @app.post(
        "/v1/categories/{category}/pause",
        summary="Pause a category: its applications wait",
        tags=["categories"],
        response_model=CategoryAnswer,
        responses=CATEGORY_REFUSED,
    )
    async def pause(
        category: Category, actor: Admin, request: Request, idempotency_key: IdempotencyKey = None
    ) -> JSONResponse:
        answer = CategoryAnswer(category=category, open=False)
        action = answering(lambda conn: admin.set_category(conn, category, False, actor, line), 200, answer)
        return await run(action, request, actor, idempotency_key)

    @app.post(
        "/v1/categories/{category}/resume",
        summary="Resume a paused category",
        tags=["categories"],
        response_model=CategoryAnswer,
        responses=CATEGORY_REFUSED,
    )
    async def resume(
        category: Category, actor: Admin, request: Request, idempotency_key: IdempotencyKey = None
    ) -> JSONResponse:
        answer = CategoryAnswer(category=category, open=True)
        action = answering(lambda conn: admin.set_category(conn, category, True, actor, line), 200, answer)
        return await run(action, request, actor, idempotency_key)

    @app.get("/v1/fiscal-years", summary="State of every pot", tags=["fiscal-years"])
    async def pots(actor: Admin) -> list[dict[str, Any]]:
        return await store.pots_view(pool)

    @app.get("/v1/waitlist", summary="Everyone waiting, in line order", tags=["waitlist"])
    async def waitlist(actor: Admin) -> list[dict[str, Any]]:
        return await store.waitlist_view(pool)

    serve(app, DESCRIPTION)

    return app
