"""The read API: the totals as JSON, and the open-data export (CSV, JSON, the row's JSON Schema). Public:
the figures are aggregates without personal data, published for transparency, so no route takes a token."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from fastapi import FastAPI, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from runtime.openapi import ApiDescription, serve
from runtime.problems import install_problem_handlers
from schemas.envelope import utc_now
from services.statistics.domain import Cell, Figure
from services.statistics.export import COLUMNS, ROW_SCHEMA, SCHEMA_VERSION, as_csv, as_json, as_rows

DimensionName = Literal["category", "district", "applicant_kind", "day"]
Totals = Callable[[], Mapping[Cell, Figure]]
# No token, so no 401 and no throttle's 429; no database, so no 503 database.unavailable.
DESCRIPTION = ApiDescription(
    "statistics",
    8005,
    {
        "totals": "The programme's totals by dimension, period and status",
        "open-data": "Every total as open data (CSV, JSON) and the JSON Schema of one row",
    },
    shared_problems={},
)
# Public by design: an empty requirement says so (an omitted one would inherit any global scheme).
PUBLIC: dict[str, Any] = {"security": []}


class Row(BaseModel):
    """One total; the open-data row schema (``/v1/open-data/schema.json``) says the same, with patterns."""

    model_config = ConfigDict(extra="forbid")

    dimension: DimensionName
    period: str = Field(description="The fiscal year, or the UTC day of the decision (dimension day)")
    value: str = Field(description="Category id, district (first five AGS digits), applicant kind, or 'all' (day)")
    status: Literal["in_review", "waitlisted", "reserved", "approved", "rejected", "withdrawn"]
    applications: int = Field(ge=0)
    amount_cents: int = Field(ge=0, description="Euro cents")


class TotalsDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_: str = Field(alias="schema", description=f"Always `{SCHEMA_VERSION}`")
    generated_at: str = Field(description="When the answer was made (UTC, ISO 8601, seconds)")
    currency: str = Field(description="Always 'EUR cents'")
    rows: list[Row]


def build_api(totals: Totals) -> FastAPI:
    app = FastAPI(
        title="Thüringen E-Government funding: statistics",
        version="1.0.0",
        description="Live totals of the programme and the open-data export; aggregates only, no personal data.",
    )
    install_problem_handlers(app)  # an invalid filter is a problem document like everywhere else

    @app.get(
        "/v1/totals",
        summary="Totals by dimension, period and status",
        tags=["totals"],
        response_model=TotalsDocument,
        response_model_by_alias=True,
        openapi_extra=PUBLIC,
    )
    async def read_totals(
        dimension: DimensionName | None = None, period: str | None = Query(default=None, max_length=10)
    ) -> dict[str, Any]:
        return as_json(as_rows(totals(), dimension, period), _now())

    @app.get(
        "/v1/open-data/totals.json",
        summary="Open data: every total, JSON",
        tags=["open-data"],
        response_model=TotalsDocument,
        response_model_by_alias=True,
        openapi_extra=PUBLIC,
    )
    async def open_data_json() -> dict[str, Any]:
        return as_json(as_rows(totals()), _now())

    @app.get(
        "/v1/open-data/totals.csv",
        summary="Open data: every total, CSV",
        tags=["open-data"],
        response_class=Response,
        responses={
            200: {
                "description": f"UTF-8, a header line ({','.join(COLUMNS)}), lines end in LF",
                "content": {"text/csv": {"schema": {"type": "string"}}},
            }
        },
        openapi_extra=PUBLIC,
    )
    async def open_data_csv() -> Response:
        return Response(as_csv(as_rows(totals())), media_type="text/csv; charset=utf-8")

    @app.get(
        "/v1/open-data/schema.json",
        summary="The JSON Schema (2020-12) of one row",
        tags=["open-data"],
        responses={200: {"description": "The row's JSON Schema", "content": {"application/json": {"schema": {}}}}},
        openapi_extra=PUBLIC,
    )
    async def open_data_schema() -> dict[str, Any]:
        return ROW_SCHEMA

    serve(app, DESCRIPTION)
    return app


def _now() -> str:
    return utc_now().isoformat(timespec="seconds")
