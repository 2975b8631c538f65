"""The statistics read API answers only what its committed OpenAPI document declares: schemathesis runs
every operation in process (no broker: the totals are a fixed mapping), and a bad filter is a problem
document, not FastAPI's own error body."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from runtime import openapi
from services.statistics.api import DESCRIPTION, build_api
from services.statistics.domain import Cell, Dimension, Figure, Status
from services.statistics.export import ROW_SCHEMA

pytestmark = pytest.mark.unit

TOTALS = {
    Cell(Dimension.CATEGORY, "2026", "e_akte", Status.APPROVED): Figure(2, 150_000_00),
    Cell(Dimension.DISTRICT, "2026", "16051", Status.WAITLISTED): Figure(1, 80_000_00),
    Cell(Dimension.DAY, "2026-03-02", "all", Status.REJECTED): Figure(1, 20_000_00),
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def committed() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DESCRIPTION.path.read_text(encoding="utf-8"))
    return document


def test_the_served_document_is_the_committed_one() -> None:
    app = build_api(lambda: TOTALS)
    served = TestClient(app).get("/openapi.json").json()
    assert openapi.render(served) == openapi.render(committed())
    for operation in (op for item in served["paths"].values() for op in item.values()):
        assert operation["security"] == [], "public by design, and the document must say so"
        assert operation["operationId"]
        assert operation["tags"]


def test_a_bad_filter_is_a_problem_document() -> None:
    answer = TestClient(build_api(lambda: TOTALS)).get("/v1/totals", params={"dimension": "portal"})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errors"][0]["pointer"] == "/dimension"


def test_every_row_is_valid_under_the_published_row_schema() -> None:
    client = TestClient(build_api(lambda: TOTALS))
    rows = client.get("/v1/open-data/totals.json").json()["rows"]
    assert len(rows) == len(TOTALS)
    validator = jsonschema.Draft202012Validator(ROW_SCHEMA, format_checker=jsonschema.FormatChecker())
    for row in rows:
        validator.validate(row)
    csv = client.get("/v1/open-data/totals.csv")
    assert csv.headers["content-type"].startswith("text/csv")
    assert len(csv.text.splitlines()) == 1 + len(TOTALS)


def test_every_answer_is_declared_by_the_document() -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", build_api(lambda: TOTALS))
    failures: list[str] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        for mode in schemathesis.GenerationMode:

            @settings(
                max_examples=15,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case: Any) -> None:
                try:
                    case.call_and_validate(checks=CHECKS)
                except AssertionError as failure:
                    failures.append(f"{case.operation.label}: {failure}")

            try:
                call()
            except Unsatisfiable:
                # A request without parameters or body cannot be made invalid: nothing to generate.
                assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
    assert not failures, "\n\n".join(failures[:10])
