"""Schemathesis against the running intake, review and budget: generated requests, valid and invalid,
with valid credentials; no answer may be a 5xx, and every answer must be one its committed OpenAPI
document declares (status code, content type, body schema, headers).

The three services run here as processes of this test, against the session's scratch broker (not the
shared log the audit verifies) and databases of their own, because fuzzing opens and closes fiscal
years and pauses categories: the suite's shared services must not see that. Bounded by examples per
operation and generation mode (``HTTP_FUZZ_EXAMPLES``, default 10) and by a deadline over the run.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.strategies import SearchStrategy
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from runtime.kafka import KafkaAccess
from services.review import store as review_store
from tests.conftest import issue_portal_token
from tests.support import (
    ADMIN_TOKEN,
    REPO,
    SERVICE_PORTS,
    SMTP_TEST_PORT,
    TEST_SLOT,
    ServiceProcesses,
    service_database,
)

pytestmark = pytest.mark.e2e

SERVICES = ("intake", "review", "budget")
PORTS = {name: SERVICE_PORTS[name] + 80 for name in SERVICES}  # beside the suite's own services
CASEWORKER_TOKEN = "egc_fuzz-test-token"
EXAMPLES = int(os.environ.get("HTTP_FUZZ_EXAMPLES", "10"))
DEADLINE_SECONDS = 120.0  # a guard against a hang; a quiet machine needs about 25 s
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="module")
async def tokens(pg_admin_dsn: str, log_dir: Path, scratch_kafka: KafkaAccess) -> AsyncIterator[dict[str, str]]:
    databases = {name: await service_database(pg_admin_dsn, f"egov_test{TEST_SLOT}_{name}_fuzz") for name in SERVICES}
    processes = ServiceProcesses(
        scratch_kafka,
        {name: db.runtime for name, db in databases.items()},
        SMTP_TEST_PORT,
        log_dir,
        owner_dsns={name: db.owner for name, db in databases.items()},
        http_ports={**SERVICE_PORTS, **PORTS},
    )
    try:
        await processes.start_ready(*SERVICES)
        pool = await asyncpg.create_pool(databases["review"].runtime, min_size=1, max_size=1)
        try:
            await review_store.save_caseworker_token(pool, "sb-fuzz", CASEWORKER_TOKEN)
        finally:
            await pool.close()
        yield {
            "intake": await issue_portal_token(databases["intake"].runtime, "portal-fuzz"),
            "review": CASEWORKER_TOKEN,
            "budget": ADMIN_TOKEN,
        }
    finally:
        await processes.stop_all()


def fuzz(service: str, token: str, deadline: float) -> list[str]:
    """Every operation of the committed document, in both generation modes; the failures found."""
    schema = schemathesis.openapi.from_path(REPO / "schemas" / "openapi" / f"{service}.json")
    target = Target(f"http://127.0.0.1:{PORTS[service]}", {"Authorization": f"Bearer {token}"}, deadline)
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"{service}: schemathesis cannot read the document: {result}"
        operation = result.ok()
        for mode in schemathesis.GenerationMode:
            target.exercise(operation.as_strategy(generation_mode=mode), f"{service} {operation.label} ({mode.value})")
    return target.failures


@dataclass
class Target:
    base_url: str
    headers: dict[str, str]
    deadline: float
    failures: list[str] = field(default_factory=list)

    def exercise(self, cases: SearchStrategy[Any], label: str) -> None:
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,  # the same requests on every run: a failure is reproducible
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases)
        def call(case: Any) -> None:
            if time.monotonic() > self.deadline:
                return
            try:
                case.call_and_validate(base_url=self.base_url, headers=self.headers, checks=CHECKS, timeout=10)
            except (AssertionError, FailureGroup) as failure:
                self.failures.append(f"{label}: {failure}")

        call()


async def test_an_admin_action_repeated_with_its_idempotency_key_is_answered_once(tokens: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{PORTS['budget']}/v1/fiscal-years"
    auth = {"Authorization": f"Bearer {tokens['budget']}", "Content-Type": "application/json"}
    keyed = {**auth, "Idempotency-Key": "open-2031"}
    async with httpx.AsyncClient(timeout=10) as http:
        first = await http.post(url, content='{"fiscal_year": 2031, "pot_cents": 500}', headers=keyed)
        # Another key order and spacing is the same request: the first answer, and nothing opened twice.
        again = await http.post(url, content='{"pot_cents":500,"fiscal_year":2031}', headers=keyed)
        unkeyed = await http.post(url, content='{"fiscal_year": 2031, "pot_cents": 500}', headers=auth)
        other = await http.post(url, content='{"fiscal_year": 2031, "pot_cents": 501}', headers=keyed)
    assert (first.status_code, again.status_code) == (201, 201), first.text
    assert first.json() == again.json() == {"fiscal_year": 2031, "pot_cents": 500}
    assert (unkeyed.status_code, unkeyed.json()["code"]) == (409, "fiscal_year.already_open")
    assert (other.status_code, other.json()["code"]) == (409, "idempotency.key_reused")
    assert other.headers["content-type"] == "application/problem+json"


async def test_every_answer_is_declared_by_its_document_and_none_is_a_server_error(tokens: dict[str, str]) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    failures: list[str] = []
    for service in SERVICES:
        started = time.monotonic()
        failures += await asyncio.to_thread(fuzz, service, tokens[service], deadline)
        print(f"{service}: fuzzed in {time.monotonic() - started:.1f} s")
    assert time.monotonic() < deadline, "the fuzzing ran out of time before every operation was tried"
    assert not failures, "\n\n".join(failures[:20])
