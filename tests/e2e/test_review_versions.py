"""Rules changes never rewrite history: a new rules version applies to cases reviewed after the
review service loaded it; earlier decisions keep theirs; "what if" replays a period and emits nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from runtime.kafka import KafkaAccess
from schemas.events import ApplicationReviewed, ReviewOutcome
from schemas.rules import RULES_DIR
from schemas.topics import REVIEWS
from tests.e2e.test_review_queue import (
    EARLY_START,
    V1,
    Caseworker,
    events_about,
    issue_caseworker,
    receive,
    reviewed,
)
from tests.support import REPO, ServiceProcesses, read_topic, sample_application

pytestmark = pytest.mark.e2e

V2_FILE = RULES_DIR / "egov-2025-v2.toml"
V2 = "egov-2025-v2"


@asynccontextmanager
async def review_with_rules(services: ServiceProcesses, rules_file: Path) -> AsyncIterator[None]:
    """Stop the review service and run it with another rules file, then bring the usual one back."""
    await services.stop("review")
    log = open(services.log_dir / "review-rules.log", "ab")  # noqa: SIM115 - handed to the child process
    env = {**services.env("review"), "REVIEW_RULES_FILE": str(rules_file)}
    services.processes["review"] = subprocess.Popen(
        [sys.executable, "-m", "services.review"], cwd=REPO, env=env, stdout=log, stderr=log
    )
    try:
        await services.wait_ready("review")
        yield
    finally:
        await services.stop("review")
        log.close()
        services.start("review")
        await services.wait_ready("review")


def what_if(review_dsn: str, rules_file: Path, day: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "services.review.whatif", "--rules", str(rules_file), "--from", day, "--to", day],
        cwd=REPO,
        env={**os.environ, "REVIEW_DATABASE_URL": review_dsn},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


async def test_new_rules_apply_after_loading_and_earlier_decisions_keep_theirs(
    services: ServiceProcesses, kafka: KafkaAccess, service_dsns: dict[str, str]
) -> None:
    caseworker = Caseworker(issue_caseworker(service_dsns["review"], "sb-clara"))
    before = await receive(kafka, sample_application())
    pending = await receive(kafka, {**sample_application(), "early_start": EARLY_START})
    [decided_under_v1] = await reviewed(kafka, before)
    assert (decided_under_v1.outcome, decided_under_v1.rules_version) == (ReviewOutcome.ELIGIBLE, V1)
    [waiting] = await reviewed(kafka, pending)
    assert waiting.outcome is ReviewOutcome.NEEDS_MANUAL_REVIEW

    async with review_with_rules(services, V2_FILE):
        after = await receive(kafka, sample_application())
        [under_v2] = await reviewed(kafka, after)
        assert (under_v2.outcome, under_v2.rules_version) == (ReviewOutcome.INELIGIBLE, V2)
        assert [f.rule_id for f in under_v2.findings if not f.passed] == ["R04-financing"], "70 % under v2"

        decided = await caseworker.post(
            f"/v1/cases/{pending}/decision",
            {"outcome": "eligible", "justification": "Vorzeitiger Beginn begründet.", "early_start_permitted": True},
        )
        assert decided.status_code == 200, decided.text
        final = (await reviewed(kafka, pending, count=2))[1]
        assert (final.outcome, final.rules_version) == (ReviewOutcome.ELIGIBLE, V1), "reviewed under v1, stays v1"

    all_reviews = await events_about(kafka, REVIEWS, before, ApplicationReviewed, count=2, timeout=2)
    assert [e.payload(ApplicationReviewed).rules_version for e in all_reviews] == [V1], "no re-review"
    conn = await asyncpg.connect(service_dsns["review"])
    try:
        versions = dict(
            await conn.fetch(
                "SELECT application_id, rules_version FROM reviews WHERE application_id = ANY($1)",
                [before, pending, after],
            )
        )
    finally:
        await conn.close()
    assert versions == {before: V1, pending: V1, after: V2}


async def test_what_if_prints_changed_outcomes_and_emits_nothing(
    services: ServiceProcesses, kafka: KafkaAccess, service_dsns: dict[str, str]
) -> None:
    app_id = await receive(kafka, sample_application())
    await reviewed(kafka, app_id)
    published_before = len(await read_topic(kafka, REVIEWS, lambda _: False, timeout=1.5))
    today = datetime.now(UTC).date().isoformat()

    report = what_if(service_dsns["review"], V2_FILE, today)

    line = next(x for x in report.splitlines() if app_id in x)
    assert line.startswith("*"), "marked as changed"
    assert f"{V1}: eligible" in line
    assert "ineligible" in line.split(f"{V1}: eligible", 1)[1]
    assert "R04-financing" in line
    assert f"What if {V2} had reviewed the applications received {today} .. {today}" in report
    assert "eligible -> ineligible" in report.splitlines()[-1]
    assert report.rstrip().endswith("Nothing was emitted.")
    unchanged = what_if(service_dsns["review"], RULES_DIR / "egov-2024-v1.toml", today)
    assert next(x for x in unchanged.splitlines() if app_id in x).startswith(" "), "same rules, same outcome"

    published_after = len(await read_topic(kafka, REVIEWS, lambda _: False, timeout=1.5))
    assert published_after == published_before
    conn = await asyncpg.connect(service_dsns["review"])
    try:
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
    finally:
        await conn.close()
