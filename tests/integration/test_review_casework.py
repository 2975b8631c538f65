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
from schemas.events import ApplicationCompleted, ApplicationReceived, ApplicationReviewed, ReviewOutcome
from schemas.rules import RULES_DIR, Rules, load_rules
from services.review import caseworker_commands
from services.review.casework import Decision
from services.review.handlers import routes
from services.review.topology import MIGRATIONS
from tests.support import TEST_SLOT, as_intake_writes, fresh_database, sample_application

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
    """The receipt and, as its uploads would, the application's completion: what review then stages."""
    then = as_intake_writes(envelope.payload(ApplicationReceived))[1:] if envelope.is_a(ApplicationReceived) else []
    out = []
    for one in [envelope, *then]:
        async with pool.acquire() as conn, conn.transaction():
            staged = list(await routes(rules)[one.type](conn, one))
            await stage(conn, staged)
        out.extend(staged)
    return out


async def test_an_application_is_reviewed_once_its_attachments_arrived_with_that_time_as_its_place(
    pool: asyncpg.Pool,
) -> None:
    envelope = received()
    _, completion = as_intake_writes(envelope.payload(ApplicationReceived), at=datetime.now(UTC))
    handlers = routes(V1)
    assert await handle_once(pool, "review-automatic", handlers[envelope.type], envelope) == "handled"
    assert await pool.fetchval("SELECT count(*) FROM reviews WHERE application_id = $1", envelope.subject) == 0
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE key = $1", envelope.subject) == 0, "it waits"
    assert await handle_once(pool, "review-automatic", handlers[completion.type], completion) == "handled"
    [staged] = await pool.fetch("SELECT value FROM outbox WHERE key = $1", envelope.subject)
    reviewed = Envelope.from_bytes(bytes(staged["value"]))
    assert reviewed.causationid == completion.id
    assert reviewed.payload(ApplicationReviewed).place_at == completion.payload(ApplicationCompleted).completed_at
    assert reviewed.payload(ApplicationReviewed).received_at == envelope.payload(ApplicationReceived).received_at


async def test_one_announcing_no_attachments_is_complete_and_reviewed_at_receipt(pool: asyncpg.Pool) -> None:
    envelope = received(attachments=[])
    [reviewed] = await deliver(pool, envelope)
    event = reviewed.envelope.payload(ApplicationReviewed)
    assert event.place_at == envelope.payload(ApplicationReceived).received_at
    assert event.outcome is ReviewOutcome.INELIGIBLE, "the category requires a cost plan and a description"


async def test_a_redelivered_or_reissued_completion_gives_one_review(pool: asyncpg.Pool) -> None:
    envelope = received()
    _, completion = as_intake_writes(envelope.payload(ApplicationReceived))
    handlers = routes(V1)
    assert await handle_once(pool, "review-automatic", handlers[envelope.type], envelope) == "handled"
    assert await handle_once(pool, "review-automatic", handlers[envelope.type], envelope) == "duplicate"
    assert await handle_once(pool, "review-automatic", handlers[completion.type], completion) == "handled"
    assert await handle_once(pool, "review-automatic", handlers[completion.type], completion) == "duplicate"
    reissued = Envelope.wrap(completion.payload(ApplicationCompleted), source="/egov/intake", subject=envelope.subject)
    assert await handle_once(pool, "review-automatic", handlers[completion.type], reissued) == "handled"
    again = Envelope.wrap(envelope.payload(ApplicationReceived), source="/egov/intake", subject=envelope.subject)
    assert await handle_once(pool, "review-automatic", handlers[envelope.type], again) == "handled"
    assert await pool.fetchval("SELECT count(*) FROM reviews WHERE application_id = $1", envelope.subject) == 1
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE key = $1", envelope.subject) == 1
    assert await pool.fetchval("SELECT count(*) FROM awaiting_documents") == 0, "nothing waits any more"


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
