"""The portal API's committed OpenAPI document, intake's pure policies (limits, scope, withdrawal, cursors)
and its group commit.

Validation itself is covered by test_intake_validation.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from runtime.problems import Problem
from schemas.application import FundingApplication
from services.intake.api import decode_cursor, encode_cursor, plausible_id
from services.intake.batching import Grouped
from services.intake.domain import STATUS_RANK
from services.intake.models import ApplicationState
from services.intake.openapi import document, drifted
from services.intake.policy import (
    TokenBucket,
    scope_problem,
    unstorable_text,
    withdrawal_refusal,
)
from tests.support import sample_application

pytestmark = pytest.mark.unit


def test_the_committed_openapi_document_matches_the_code() -> None:
    assert not drifted(), "schemas/openapi/intake.json drifts: run `python -m services.intake.openapi`"


def test_the_openapi_document_describes_bodies_errors_and_credentials() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    submit = doc["paths"]["/v1/applications"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/FundingApplication")
    assert "FundingApplication" in doc["components"]["schemas"]
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert operation["security"] == [{"HTTPBearer": []}], (path, method)
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert list(response["content"]) == ["application/problem+json"], (path, method, status)
    assert {"413", "415", "422", "429", "503"} <= set(submit["responses"])


def test_the_api_states_are_the_ranked_states() -> None:
    assert {s.value for s in ApplicationState} == set(STATUS_RANK)


def test_a_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take(10.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(10.0) == pytest.approx(0.5)
    assert bucket.take(10.5) == 0.0, "half a second at 2/s brings one token"
    assert bucket.take(10.5) > 0
    assert [bucket.take(100.0) for _ in range(4)].count(0.0) == 3, "never more than the burst saved up"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("received", None),
        ("needs_manual_review", None),
        ("eligible", None),
        ("waitlisted", None),
        ("funds_reserved", None),
        ("approved", "application.already_decided"),
        ("rejected", "application.already_decided"),
        ("withdrawn", "application.already_withdrawn"),
    ],
)
def test_withdrawal_is_allowed_until_the_decision(status: str, code: str | None) -> None:
    refusal = withdrawal_refusal(status)
    assert (refusal[0] if refusal else None) == code


def test_a_portal_confined_to_prefixes_submits_only_for_those_applicants() -> None:
    application = FundingApplication.model_validate(sample_application(ags="16051000"))
    assert scope_problem(None, application) is None
    assert scope_problem(("16051", "16066"), application) is None
    problem = scope_problem(("16066",), application)
    assert problem is not None
    assert (problem.code, problem.pointer) == ("auth.applicant_not_permitted", "/applicant/ags")


def test_nul_characters_are_refused_with_their_pointer() -> None:
    body = sample_application(title="E-Akte\x00")
    body["attachments"][1]["file_name"] = "plan\x00.pdf"
    problems = unstorable_text(FundingApplication.model_validate(body))
    assert {(p.code, p.pointer) for p in problems} == {
        ("field.invalid_character", "/project/title"),
        ("field.invalid_character", "/attachments/1/file_name"),
    }
    assert unstorable_text(FundingApplication.model_validate(sample_application())) == []


def test_a_cursor_round_trips_and_a_forged_one_is_a_bad_request() -> None:
    at = datetime(2027, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
    assert decode_cursor(encode_cursor(at, "TH-EGOV-2027-000123")) == (at, "TH-EGOV-2027-000123")
    for forged in ("", "!!!", "bm90IGEgY3Vyc29y", encode_cursor(at, "x\x00"), "WyIyMDI3LTAxLTAxIiwgMV0"):
        with pytest.raises(Problem) as refused:
            decode_cursor(forged)
        assert (refused.value.status, refused.value.code) == (400, "request.invalid_cursor")


def test_only_well_formed_application_ids_reach_the_database() -> None:
    assert plausible_id("TH-EGOV-2027-000123")
    assert not plausible_id("TH-EGOV-2027-%00")
    assert not plausible_id("TH-EGOV-2027-" + "1" * 40)


async def test_group_commit_runs_a_lone_call_at_once_and_groups_those_that_wait() -> None:
    calls: list[list[int]] = []
    release = asyncio.Event()

    async def double(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        if len(calls) == 1:
            await release.wait()  # the first statement is still in flight while the others arrive
        return [2 * i for i in items]

    grouped: Grouped[int, int] = Grouped(double)
    first = asyncio.create_task(grouped(1))
    await asyncio.sleep(0)
    later = [asyncio.create_task(grouped(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    release.set()
    assert [await first, *[await t for t in later]] == [2, 4, 6, 8]
    assert calls == [[1], [2, 3, 4]]


async def test_group_commit_tells_every_caller_of_a_failed_statement_and_goes_on() -> None:
    attempts: list[Sequence[int]] = []

    async def flaky(items: Sequence[int]) -> list[int]:
        attempts.append(items)
        if len(attempts) == 1:
            raise RuntimeError("database gone")
        return [2 * i for i in items]

    grouped: Grouped[int, int] = Grouped(flaky)
    results = await asyncio.gather(grouped(1), grouped(2), return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    assert await grouped(5) == 10, "the next statement runs as usual"
