"""The open-data export: the totals as rows, in JSON and CSV, with the schema documented in docs/statistics.md.

A row names a dimension value (category id, district key, applicant kind, or "all" for a day), a period
(fiscal year, or the UTC day of the decision), a status, and how many applications with how many euro
cents. Nothing in it identifies an application or a person.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from services.statistics.domain import Cell, Figure

SCHEMA_VERSION = "egov-statistics-totals/1"
COLUMNS = ("dimension", "period", "value", "status", "applications", "amount_cents")

ROW_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_VERSION,
    "title": "One total of the Thüringen E-Government funding programme",
    "type": "object",
    "additionalProperties": False,
    "required": list(COLUMNS),
    "properties": {
        "dimension": {"enum": ["category", "district", "applicant_kind", "day"]},
        "period": {
            "type": "string",
            "pattern": r"^[0-9]{4}(-[0-9]{2}-[0-9]{2})?$",
            "description": "The fiscal year (dimension category, district, applicant_kind) or the UTC day of the "
            "decision (dimension day)",
        },
        "value": {
            "type": "string",
            "pattern": "^[a-z0-9_]{1,40}$",
            "description": "Category id, district (first five digits of the AGS), applicant kind, or 'all' (day)",
        },
        "status": {"enum": ["in_review", "waitlisted", "reserved", "approved", "rejected", "withdrawn"]},
        "applications": {"type": "integer", "minimum": 0},
        "amount_cents": {"type": "integer", "minimum": 0, "description": "Euro cents"},
    },
}


def as_rows(
    totals: Mapping[Cell, Figure], dimension: str | None = None, period: str | None = None
) -> list[dict[str, Any]]:
    return [
        {
            "dimension": str(cell.dimension),
            "period": cell.period,
            "value": cell.value,
            "status": str(cell.status),
            "applications": figure.applications,
            "amount_cents": figure.amount_cents,
        }
        for cell, figure in totals.items()
        if (dimension is None or cell.dimension == dimension) and (period is None or cell.period == period)
    ]


def as_json(rows: list[dict[str, Any]], generated_at: str) -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, "generated_at": generated_at, "currency": "EUR cents", "rows": rows}


def as_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
