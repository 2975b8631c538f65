"""The fair line on the real PostgreSQL: places are the applicant's time, held by earmarks during review,
and decided only once the arrival frontier has passed them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from schemas.envelope import Envelope
from schemas.events import (
    ApplicationDecided,
    ApplicationWaitlisted,
    Decision,
    FundsEarmarked,
    FundsReleased,
    FundsReserved,
    ReviewOutcome,
)
from services.budget import admin, arrivals, store
from services.budget.line import LineSettings
from services.budget.lineserver import LineServer
from tests.integration.budget_support import (
    announcing_attachments,
    app_id,
    assert_invariants,
    budget_pool,
    completed,
    deliver,
    place_time,
    received,
    reset,
    reviewed,
    staged,
    withdrawn,
)
from tests.support import TEST_SLOT

pytestmark = pytest.mark.integration

LINE = LineSettings(policy="strict", commit_after_seconds=0)


@pytest.fixture(scope="module")
async def pool(pg_admin_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    async for p in budget_pool(pg_admin_dsn, f"egov_test{TEST_SLOT}_budget_fair_line"):
        yield p


@pytest.fixture(autouse=True)
async def clean(pool: asyncpg.Pool) -> None:
    await reset(pool)
    await pool.execute("DELETE FROM arrival_progress")
    async with pool.acquire() as conn, conn.transaction():
        await admin.open_fiscal_year(conn, 2027, 100, "admin:test", LINE)


async def read_past(pool: asyncpg.Pool, place_ms: int) -> None:
    """A watermark at this time (milliseconds after the test's BASE) on every partition; serve the line."""
    at = place_time(0, place_ms)
    await arrivals.record_watermarks(pool, [(p, at) for p in range(LINE.partitions)])
    await LineServer(pool, relay=None, line=LINE, interval=0.1).tick()  # type: ignore[arg-type]


async def read_past_everything(pool: asyncpg.Pool) -> None:
    await arrivals.everything_arrived(pool, LINE.partitions)
    await LineServer(pool, relay=None, line=LINE, interval=0.1).tick()  # type: ignore[arg-type]


def payloads(envelopes: list[Envelope], cls: type) -> list:  # type: ignore[type-arg]
    return [e.payload(cls) for e in envelopes if e.is_a(cls)]


async def status_of(pool: asyncpg.Pool, n: int) -> str:
    return str(await pool.fetchval("SELECT status FROM line WHERE application_id = $1", app_id(n)))


async def test_nothing_is_decided_before_every_partitions_watermark_has_passed_the_place(pool: asyncpg.Pool) -> None:
    await deliver(pool, received(1, 60, place_offset_ms=10), LINE)
    await LineServer(pool, relay=None, line=LINE, interval=0.1).tick()  # type: ignore[arg-type]
    assert await status_of(pool, 1) == "waiting"  # no partition reported yet
    await arrivals.record_watermark(pool, 0, place_time(0, 50))
    await LineServer(pool, relay=None, line=LINE, interval=0.1).tick()  # type: ignore[arg-type]
    assert await status_of(pool, 1) == "waiting"  # five partitions still unknown
    await read_past(pool, 10)
    assert await status_of(pool, 1) == "waiting"  # the frontier must pass the place, not reach it
    await read_past(pool, 11)
    assert await status_of(pool, 1) == "earmarked"
    assert payloads(await staged(pool), ApplicationWaitlisted) == []


async def test_the_earlier_place_gets_the_money_though_it_reached_budget_later(pool: asyncpg.Pool) -> None:
    await deliver(pool, received(1, 60, place_offset_ms=30), LINE)  # received later, arrived first
    await deliver(pool, received(2, 60, place_offset_ms=10), LINE)
    await read_past(pool, 40)
    assert (await status_of(pool, 2), await status_of(pool, 1)) == ("earmarked", "waiting")
    out = await staged(pool)
    earmarked = payloads(out, FundsEarmarked)
    assert [(e.application_id, e.amount_cents, e.place_at) for e in earmarked] == [(app_id(2), 60, place_time(0, 10))]
    [told] = payloads(out, ApplicationWaitlisted)
    assert (told.application_id, told.position, told.in_review, told.place_at) == (
        app_id(1),
        1,
        True,
        place_time(0, 30),
    )
    await assert_invariants(pool)


async def test_a_manual_case_keeps_its_earmark_for_a_day_and_gets_the_money_its_place_earned(
    pool: asyncpg.Pool,
) -> None:
    await deliver(pool, received(1, 80, place_offset_ms=1), LINE)
    await deliver(pool, received(2, 40, place_offset_ms=2), LINE)
    await read_past(pool, 5)
    await deliver(pool, reviewed(2, 40, ready_offset_ms=2), LINE)  # the later one is reviewed at once
    await deliver(pool, reviewed(1, 80, ready_offset_ms=1, outcome=ReviewOutcome.NEEDS_MANUAL_REVIEW), LINE)
    assert (await status_of(pool, 1), await status_of(pool, 2)) == ("earmarked", "waiting")
    # A caseworker decides a day later: the place (and its money) was the applicant's all along.
    a_day_later = reviewed(1, 80, ready_offset_ms=1)
    a_day_later.data["ready_at"] = (place_time(1) + timedelta(days=1)).isoformat()
    await deliver(pool, a_day_later, LINE)
    assert (await status_of(pool, 1), await status_of(pool, 2)) == ("reserved", "waiting")
    # The grant notice once a withdrawal sent before the reservation would have arrived.
    await read_past_everything(pool)
    assert (await status_of(pool, 1), await status_of(pool, 2)) == ("approved", "waiting")
    out = await staged(pool)
    [reserved] = payloads(out, FundsReserved)
    assert (reserved.application_id, reserved.from_earmark, reserved.amount_cents) == (app_id(1), True, 80)
    [decided] = payloads(out, ApplicationDecided)
    assert (decided.application_id, decided.decision) == (app_id(1), Decision.APPROVED)
    await assert_invariants(pool)


async def test_a_withdrawal_still_on_its_way_when_review_found_it_eligible_wins(pool: asyncpg.Pool) -> None:
    """Review and withdrawal travel on different topics: the reservation waits for the frontier before
    the grant notice, so the withdrawal the portal sent first releases the money instead."""
    await deliver(pool, received(1, 80, place_offset_ms=1), LINE)
    await read_past(pool, 5)
    await deliver(pool, reviewed(1, 80, ready_offset_ms=1), LINE)
    assert await status_of(pool, 1) == "reserved"
    await deliver(pool, withdrawn(1), LINE)
    await read_past_everything(pool)
    assert await status_of(pool, 1) == "withdrawn"
    assert payloads(await staged(pool), ApplicationDecided) == []
    await assert_invariants(pool)


async def test_an_ineligible_earmark_goes_to_the_next_place_in_line(pool: asyncpg.Pool) -> None:
    await deliver(pool, received(1, 80, place_offset_ms=1), LINE)
    await deliver(pool, received(2, 60, place_offset_ms=2), LINE)
    await read_past(pool, 5)
    await deliver(pool, reviewed(1, 80, ready_offset_ms=1, outcome=ReviewOutcome.INELIGIBLE), LINE)
    assert (await status_of(pool, 1), await status_of(pool, 2)) == ("rejected", "earmarked")
    released = payloads(await staged(pool), FundsReleased)
    assert [(r.application_id, r.reason, r.earmarked) for r in released] == [(app_id(1), "ineligible", True)]
    await assert_invariants(pool)


async def test_withdrawing_an_earmarked_application_releases_the_earmark(pool: asyncpg.Pool) -> None:
    await deliver(pool, received(1, 80, place_offset_ms=1), LINE)
    await read_past(pool, 5)
    await deliver(pool, withdrawn(1), LINE)
    assert await status_of(pool, 1) == "withdrawn"
    pot = await pool.fetchrow("SELECT available_cents, earmarked_cents FROM pots WHERE fiscal_year = 2027")
    assert (pot["available_cents"], pot["earmarked_cents"]) == (100, 0)
    await assert_invariants(pool)


async def test_the_database_refuses_earmarks_beyond_the_pot(pool: asyncpg.Pool) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("UPDATE pots SET earmarked_cents = 101, available_cents = -1 WHERE fiscal_year = 2027")
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("UPDATE pots SET earmarked_cents = 10 WHERE fiscal_year = 2027")  # parts != pot


async def test_the_pot_cannot_be_lowered_below_what_is_earmarked(pool: asyncpg.Pool) -> None:
    await deliver(pool, received(1, 80, place_offset_ms=1), LINE)
    await read_past(pool, 5)
    async with pool.acquire() as conn, conn.transaction():
        with pytest.raises(Exception, match="earmarked"):
            await admin.adjust_pot(conn, 2027, 79, "admin:test", LINE)


async def test_an_arrival_behind_its_partitions_frontier_is_reported_late(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert not await arrivals.record_arrival(conn, 3, place_time(0, 100))  # no watermark yet
        await arrivals.record_watermark(conn, 3, place_time(0, 120))
        assert not await arrivals.record_arrival(conn, 3, place_time(0, 120))  # at it: not before it
        assert await arrivals.record_arrival(conn, 3, place_time(0, 110))  # behind 120: a watermark lied
        await arrivals.record_watermark(conn, 3, place_time(0, 90))  # an older watermark moves nothing back
        assert await arrivals.record_arrival(conn, 3, place_time(0, 110))
        # Arrivals move no frontier: only watermarks do.
        assert not await arrivals.record_arrival(conn, 4, place_time(0, 200))
        assert not await arrivals.record_arrival(conn, 4, place_time(0, 160))
    assert await store.waiting_line(pool, None) == []


async def test_an_application_announcing_attachments_takes_its_place_when_the_last_one_arrived(
    pool: asyncpg.Pool,
) -> None:
    await deliver(pool, announcing_attachments(received(1, 60, place_offset_ms=1)), LINE)
    await deliver(pool, received(2, 60, place_offset_ms=20), LINE)
    await read_past(pool, 10)
    assert await status_of(pool, 1) == "incomplete", "no place, no money while its documents are missing"
    await deliver(pool, completed(1, place_time(0, 30)), LINE)
    await read_past(pool, 40)
    # Received first, but complete only after 2 was: 2 has the earlier place and gets the money.
    assert (await status_of(pool, 2), await status_of(pool, 1)) == ("earmarked", "waiting")
    place = await pool.fetchval("SELECT place_at FROM line WHERE application_id = $1", app_id(1))
    assert place == place_time(0, 30)
    [told] = payloads(await staged(pool), ApplicationWaitlisted)
    assert (told.application_id, told.place_at) == (app_id(1), place_time(0, 30))
    await assert_invariants(pool)


async def test_a_review_that_overtakes_the_completion_gives_the_place_and_a_withdrawal_leaves_incomplete(
    pool: asyncpg.Pool,
) -> None:
    await deliver(pool, announcing_attachments(received(1, 60, place_offset_ms=1)), LINE)
    await deliver(pool, announcing_attachments(received(2, 60, place_offset_ms=2)), LINE)
    await deliver(pool, reviewed(1, 60, place=place_time(0, 5)), LINE)  # review read the completion first
    await read_past(pool, 10)
    assert await status_of(pool, 1) == "reserved"  # at the place the review carried
    await deliver(pool, completed(1, place_time(0, 5)), LINE)  # then budget reads it: nothing changes
    assert payloads(await staged(pool), FundsReserved)[0].place_at == place_time(0, 5)
    await deliver(pool, withdrawn(2), LINE)
    assert await status_of(pool, 2) == "withdrawn"
    await deliver(pool, completed(2, place_time(0, 6)), LINE)
    assert await status_of(pool, 2) == "withdrawn", "a late completion does not bring it back"
    await assert_invariants(pool)
