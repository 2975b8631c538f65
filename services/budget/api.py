"""Budget administration over HTTP (budget-admin role): open and adjust pots, pause categories,
close a year, see the pots and the waitlist. Every action is an event naming the administrator."""

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel, Field

from runtime.commands import Command, CommandRunner
from runtime.credentials import bearer_token
from runtime.outbox import Outgoing
from runtime.problems import bearer_required, install_problem_handlers
from services.budget import admin, store
from services.budget.line import LineSettings
from services.budget.settings import BudgetSettings

Cents = Annotated[int, Field(strict=True, ge=0, le=10**13)]


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


def changes_only(action: Callable[[asyncpg.Connection], Awaitable[list[Outgoing]]]) -> Command[None]:
    """An administration command answers with what it was asked, so only its events matter."""

    async def command(conn: asyncpg.Connection) -> tuple[None, list[Outgoing]]:
        return None, await action(conn)

    return command


def build_api(pool: asyncpg.Pool, commands: CommandRunner, settings: BudgetSettings, line: LineSettings) -> FastAPI:
    app = FastAPI(title="Thüringen E-Government funding: budget administration", version="1.0.0")
    install_problem_handlers(app)
    principals = admin_principals(settings)

    async def administrator(authorization: Annotated[str | None, Header()] = None) -> str:
        token = bearer_token(authorization)
        if token is not None:
            for name, expected in principals.items():
                if hmac.compare_digest(token.encode(), expected.encode()):
                    return f"admin:{name}"
        raise bearer_required("egov-budget", "A budget administrator token is required")

    Admin = Annotated[str, Depends(administrator)]

    async def run(action: Callable[[asyncpg.Connection], Awaitable[list[Outgoing]]]) -> None:
        await commands.run(changes_only(action))

    @app.post("/v1/fiscal-years", status_code=201, summary="Open a fiscal year's pot")
    async def open_year(command: OpenFiscalYear, actor: Admin) -> dict[str, Any]:
        await run(lambda conn: admin.open_fiscal_year(conn, command.fiscal_year, command.pot_cents, actor, line))
        return {"fiscal_year": command.fiscal_year, "pot_cents": command.pot_cents}

    @app.put("/v1/fiscal-years/{year}/pot", summary="Raise or lower a pot (never below what is held)")
    async def adjust(year: int, command: AdjustPot, actor: Admin) -> dict[str, Any]:
        await run(lambda conn: admin.adjust_pot(conn, year, command.pot_cents, actor, line))
        return {"fiscal_year": year, "pot_cents": command.pot_cents}

    @app.post("/v1/fiscal-years/{year}/close", summary="Close a fiscal year: its money lapses")
    async def close(year: int, actor: Admin) -> dict[str, Any]:
        await run(lambda conn: admin.close_fiscal_year(conn, year, actor, line))
        return {"fiscal_year": year, "closed": True}

    @app.post("/v1/categories/{category}/pause", summary="Pause a category: its applications wait")
    async def pause(category: str, actor: Admin) -> dict[str, Any]:
        await run(lambda conn: admin.set_category(conn, category, False, actor, line))
        return {"category": category, "open": False}

    @app.post("/v1/categories/{category}/resume", summary="Resume a paused category")
    async def resume(category: str, actor: Admin) -> dict[str, Any]:
        await run(lambda conn: admin.set_category(conn, category, True, actor, line))
        return {"category": category, "open": True}

    @app.get("/v1/fiscal-years", summary="State of every pot")
    async def pots(actor: Admin) -> list[dict[str, Any]]:
        return await store.pots_view(pool)

    @app.get("/v1/waitlist", summary="Everyone waiting, in line order")
    async def waitlist(actor: Admin) -> list[dict[str, Any]]:
        return await store.waitlist_view(pool)

    return app
