"""The read API: the totals as JSON, and the open-data export (CSV, JSON, the row's JSON Schema). Public:
the figures are aggregates without personal data, published for transparency."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from fastapi import FastAPI, Query
from fastapi.responses import PlainTextResponse

from schemas.envelope import utc_now
from services.statistics.domain import Cell, Figure
from services.statistics.export import ROW_SCHEMA, as_csv, as_json, as_rows

DimensionName = Literal["category", "district", "applicant_kind", "day"]
Totals = Callable[[], Mapping[Cell, Figure]]


def build_api(totals: Totals) -> FastAPI:
    app = FastAPI(title="Thüringen E-Government funding: statistics", version="1.0.0")

    @app.get("/v1/totals", summary="Totals by dimension, period and status")
    async def read_totals(
        dimension: DimensionName | None = None, period: str | None = Query(default=None, max_length=10)
    ) -> dict[str, Any]:
        return as_json(as_rows(totals(), dimension, period), _now())

    @app.get("/v1/open-data/totals.json", summary="Open data: every total, JSON")
    async def open_data_json() -> dict[str, Any]:
        return as_json(as_rows(totals()), _now())

    @app.get("/v1/open-data/totals.csv", summary="Open data: every total, CSV", response_class=PlainTextResponse)
    async def open_data_csv() -> PlainTextResponse:
        return PlainTextResponse(as_csv(as_rows(totals())), media_type="text/csv; charset=utf-8")

    @app.get("/v1/open-data/schema.json", summary="The JSON Schema of one row")
    async def open_data_schema() -> dict[str, Any]:
        return ROW_SCHEMA

    return app


def _now() -> str:
    return utc_now().isoformat(timespec="seconds")
