"""Budget administration over HTTP (budget-admin role): open a fiscal year, see the pots."""

import hmac
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel, Field

from runtime.outbox import OutboxRelay, stage
from runtime.problems import Problem, install_problem_handlers
from services.budget import store
from services.budget.handlers import open_fiscal_year
from services.budget.settings import BudgetSettings


class OpenFiscalYear(BaseModel):
    fiscal_year: int = Field(ge=2019, le=2100)
    pot_cents: int = Field(strict=True, ge=0, le=10**13)


def build_api(pool: asyncpg.Pool, relay: OutboxRelay, settings: BudgetSettings) -> FastAPI:
    app = FastAPI(title="Thüringen E-Government funding: budget administration", version="1.0.0")
    install_problem_handlers(app)

    async def administrator(authorization: Annotated[str | None, Header()] = None) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        expected = settings.admin_token.get_secret_value()
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
            raise Problem(
                401,
                "auth.required",
                "A budget administrator token is required",
                headers={"WWW-Authenticate": 'Bearer realm="egov-budget"'},
            )
        return "admin:budget-administrator"

    Admin = Annotated[str, Depends(administrator)]

    @app.post("/v1/fiscal-years", status_code=201, summary="Open a fiscal year's pot")
    async def open_year(command: OpenFiscalYear, actor: Admin) -> dict[str, Any]:
        async with pool.acquire() as conn, conn.transaction():
            outgoing = await open_fiscal_year(
                conn, command.fiscal_year, command.pot_cents, actor, settings.waitlist_policy
            )
            if outgoing is None:
                raise Problem(409, "fiscal_year.already_open", f"Fiscal year {command.fiscal_year} is already open")
            await stage(conn, outgoing)
        relay.wake()
        return {"fiscal_year": command.fiscal_year, "pot_cents": command.pot_cents}

    @app.get("/v1/fiscal-years", summary="State of every pot")
    async def pots(actor: Admin) -> list[dict[str, int]]:
        return await store.pots_view(pool)

    return app
