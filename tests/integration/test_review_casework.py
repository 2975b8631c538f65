"""Review's handler and caseworker commands against the real PostgreSQL: one review per application,
four eyes held by the database, concurrent caseworkers, and rules versions recorded per review."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from runtime.consumer import handle_once
from runtime.db import create_pool, migrate
from runtime.outbox import Outgoing, stage
from runtime.refusals import Refused
from schemas.application import FundingApplication
from schemas.envelope import Envelope
from schemas.events import ApplicationReceived, ApplicationReviewed, ReviewOutcome
from schemas.rules import RULES_DIR, Rules, load_rules
from services.review import caseworker_commands
from services.review.casework import Decision
from services.review.handlers import routes
from services.review.topology import MIGRATIONS
from tests.support import TEST_SLOT, fresh_database, sample_application

pytestmark = pytest.mark.integration

V1 = load_rules(RULES_DIR / "egov-2024-v1.toml")
V2 = load_rules(RULES_DIR / "egov-2025-v2.toml")


@pytest.fixture
async def pool(pg_admin_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    dsn = await fresh_database(pg_admin_dsn, f"egov_test{TEST_SLOT}_review_casework")
    pool = await create_pool(dsn, max_size=4)
    await migrate(pool, MIGRATIONS)
    yield pool
    await pool.close()


def received(requested: int = 9_600_000, **extra: object) -> Envelope:
    app_id = f"TH-EGOV-2027-{random.randrange(10**7):07d}"
    eligible = requested * 100 // 80
    document = sample_application(
        requested_amount_cents=requested,
        eligible_cost_cents=eligible,
        total_cost_cents=eligible,
        funding=[{"fiscal_year": 2027, "amount_cents": requested}],
    )
    event = ApplicationReceived(
        application_id=app_id,
        portal_id="portal-a",
        received_at=datetime.now(UTC),
        category_open=True,
        application=FundingApplication.model_validate({**document, **extra}),
    )
    return Envelope.wrap(event, source="/egov/intake", subject=app_id)


async def deliver(pool: asyncpg.Pool, envelope: Envelope, rules: Rules = V1) -> list[Outgoing]:
    handler = routes(rules)[envelope.type]
    async with pool.acquire() as conn, conn.transaction():
        out = list(await handler(conn, envelope))
        await stage(conn, out)
    return out


async def test_a_redelivered_or_reissued_received_event_gives_one_review(pool: asyncpg.Pool) -> None:
    envelope = received()
    handler = routes(V1)[envelope.type]
    assert await handle_once(pool, "review-automatic", handler, envelope) == "handled"
    assert await handle_once(pool, "review-automatic", handler, envelope) == "duplicate"
    reissued = Envelope.wrap(envelope.payload(ApplicationReceived), source="/egov/intake", subject=envelope.subject)
    assert await handle_once(pool, "review-automatic", handler, reissued) == "handled"
    assert await pool.fetchval("SELECT count(*) FROM reviews WHERE application_id = $1", envelope.subject) == 1
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE key = $1", envelope.subject) == 1


async def test_each_review_records_the_rules_version_that_was_loaded(pool: asyncpg.Pool) -> None:
    early, late = received(), received()
    [first] = await deliver(pool, early, V1)
    [second] = await deliver(pool, late, V2)
    assert first.envelope.payload(ApplicationReviewed).rules_version == "egov-2024-v1"
    assert second.envelope.payload(ApplicationReviewed).outcome is ReviewOutcome.INELIGIBLE
    rows = dict(await pool.fetch("SELECT application_id, rules_version FROM reviews"))
    assert rows == {early.subject: "egov-2024-v1", late.subject: "egov-2025-v2"}


async def test_the_database_refuses_a_four_eyes_decision_by_the_proposer(pool: asyncpg.Pool) -> None:
    envelope = received(25_000_000)
    await deliver(pool, envelope)
    proposal = Decision(ReviewOutcome.ELIGIBLE, "Wirtschaftlichkeit belegt.", "sb-anna")
    async with pool.acquire() as conn, conn.transaction():
        await caseworker_commands.decide(conn, envelope.subject, proposal)
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(
            "UPDATE cases SET status = 'decided', decided_outcome = 'eligible', decided_by = proposed_by"
            " WHERE application_id = $1",
            envelope.subject,
        )


async def test_two_caseworkers_confirming_at_once_decide_once(pool: asyncpg.Pool) -> None:
    envelope = received(25_000_000)
    await deliver(pool, envelope)
    async with pool.acquire() as conn, conn.transaction():
        _, proposed = await caseworker_commands.decide(
            conn, envelope.subject, Decision(ReviewOutcome.ELIGIBLE, "Begründung liegt vor.", "sb-a")
        )
        await stage(conn, proposed)

    async def confirm(caseworker: str) -> str:
        try:
            async with pool.acquire() as conn, conn.transaction():
                done, out = await caseworker_commands.confirm(conn, envelope.subject, caseworker)
                await stage(conn, out)
                await asyncio.sleep(0.2)  # hold the case lock while the other caseworker tries
            return done.status.value
        except Refused as refused:
            return refused.code

    results = sorted(await asyncio.gather(confirm("sb-b"), confirm("sb-c")))
    assert results == ["case.already_decided", "decided"]
    staged = await pool.fetch("SELECT value FROM outbox WHERE key = $1 ORDER BY id", envelope.subject)
    events = [Envelope.from_bytes(bytes(r["value"])) for r in staged]
    assert [e.type.removeprefix("de.thueringen.egov.") for e in events] == [
        "application.reviewed.v1",
        "application.review_proposed.v1",
        "application.reviewed.v1",
    ]
    assert events[2].actor in ("sb-b", "sb-c")
