"""The three OpenAPI checks of ``make check`` (intake, review, budget, statistics) catch what they are for,
each broken on purpose here:
the drift check (document vs. code), ``redocly lint`` with the recommended rules (tools/redocly, which
deploy/venv.sh installs; missing, it fails), and the HTTP breaking-change check against the released
copies (``schemas.http_compat``).

Run: ``.venv/bin/pytest tests/ops/test_openapi_checks.py -q``
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from runtime import openapi
from schemas import http_compat
from services.budget import openapi as budget_openapi
from services.intake import openapi as intake_openapi
from services.review import openapi as review_openapi
from services.statistics import openapi as statistics_openapi
from tests.support import REPO

pytestmark = pytest.mark.ops

REDOCLY = REPO / "tools" / "redocly" / "node_modules" / ".bin" / "redocly"
SERVICES = {
    "intake": intake_openapi,
    "review": review_openapi,
    "budget": budget_openapi,
    "statistics": statistics_openapi,
}


def committed(service: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((openapi.DOCUMENT_DIR / f"{service}.json").read_text(encoding="utf-8"))
    return document


def lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    assert REDOCLY.is_file(), "redocly is not installed: deploy/venv.sh installs tools/redocly"
    env = {**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"}
    config = REPO / "tools" / "redocly" / "redocly.yaml"
    command = [str(REDOCLY), "lint", "--config", str(config), *map(str, paths)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_drift_check_sees_a_document_that_differs_from_the_code(service: str) -> None:
    module = SERVICES[service]
    document = module.document()
    assert not openapi.drifted(document, module.DESCRIPTION), f"run `python -m services.{service}.openapi`"
    document["paths"].popitem()
    assert openapi.drifted(document, module.DESCRIPTION)


def test_redocly_passes_the_committed_documents_and_fails_a_broken_one(tmp_path: Path) -> None:
    clean = lint(*(openapi.DOCUMENT_DIR / f"{service}.json" for service in SERVICES))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    broken = committed("budget")
    del broken["servers"]  # no-empty-servers
    operation = broken["paths"]["/v1/waitlist"]["get"]
    operation["operationId"] = broken["paths"]["/v1/fiscal-years"]["get"]["operationId"]  # operation-operationId-unique
    del operation["responses"]["200"]  # operation-2xx-response
    (tmp_path / "budget.json").write_text(json.dumps(broken), encoding="utf-8")
    failed = lint(tmp_path / "budget.json")
    assert failed.returncode != 0
    for rule in ("no-empty-servers", "operation-operationId-unique", "operation-2xx-response"):
        assert rule in failed.stdout + failed.stderr, rule


def test_the_released_documents_are_those_of_the_code() -> None:
    assert http_compat.check() == []


def test_the_breaking_change_check_refuses_what_breaks_a_client(tmp_path: Path) -> None:
    for service in SERVICES:
        (tmp_path / f"{service}.json").write_text(json.dumps(committed(service)), encoding="utf-8")
    budget = committed("budget")
    changed = copy.deepcopy(budget)
    del changed["paths"]["/v1/waitlist"]
    opening = changed["components"]["schemas"]["OpenFiscalYear"]
    opening["properties"]["note"] = {"type": "string"}
    opening["required"].append("note")
    changed["paths"]["/v1/fiscal-years/{year}/close"]["post"]["responses"].pop("200")
    (tmp_path / "budget.json").write_text(json.dumps(changed), encoding="utf-8")
    (tmp_path / "review.json").unlink()
    found = {str(b) for b in http_compat.check(current_dir=tmp_path)}
    assert found == {
        "review: API document removed",
        "budget GET /v1/waitlist: operation removed",
        "budget POST /v1/fiscal-years body application/json /note: required field added",
        "budget POST /v1/fiscal-years/{year}/close: answer 200 removed",
    }
    # Adding an optional field and an operation is compatible.
    compatible = copy.deepcopy(budget)
    compatible["components"]["schemas"]["OpenFiscalYear"]["properties"]["note"] = {"type": "string"}
    compatible["paths"]["/v1/ledger"] = {"get": copy.deepcopy(budget["paths"]["/v1/waitlist"]["get"])}
    assert http_compat.breaking_changes("budget", budget, compatible) == []
