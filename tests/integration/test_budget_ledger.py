"""The budget ledger against the real PostgreSQL: constraints, order, waitlist, release, administration."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import asyncpg
import pytest

from runtime.refusals import Refused
from schemas.events import (
    ApplicationDecided,
    ApplicationWaitlisted,
    FundsReleased,
    FundsReserved,
    ReviewOutcome,
    WaitlistReason,
)
from services.budget import admin, arrivals
from services.budget.line import LineSettings
from services.budget.lineserver import LineServer
from tests.integration.budget_support import (
    app_id,
    assert_invariants,
    budget_pool,
    deliver,
    reset,
    reviewed,
    staged,
    withdrawn,
)
from tests.support import TEST_SLOT

pytestmark = pytest.mark.integration

NOW = LineSettings(policy="strict", commit_after_seconds=0)
HOLD = LineSettings(policy="strict", commit_after_seconds=3600)


@pytest.fixture(scope="module")
async def pool(pg_admin_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    async for p in budget_pool(pg_admin_dsn, f"egov_test{TEST_SLOT}_budget_ledger"):
        yield p


@pytest.fixture(autouse=True)
async def clean(pool: asyncpg.Pool) -> None:
    await reset(pool)


async def open_year(pool: asyncpg.Pool, year: int, pot: int, line: LineSettings = NOW) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await admin.open_fiscal_year(conn, year, pot, "admin:test", line)


def of_type(envelopes: list, cls: type) -> list:  # type: ignore[type-arg]
    return [e.payload(cls) for e in envelopes if e.is_a(cls)]


async def test_the_database_refuses_an_over_commitment(pool: asyncpg.Pool) -> None:
    await open_year(pool, 2027, 1000)
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("UPDATE pots SET available_cents = 0, reserved_cents = 1001 WHERE fiscal_year = 2027")
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("UPDATE pots SET available_cents = 500, reserved_cents = 600 WHERE fiscal_year = 2027")


async def test_one_active_reservation_per_application_and_year(pool: asyncpg.Pool) -> None:
    await open_year(pool, 2027, 10_000)
    insert = (
        "INSERT INTO reservations (application_id, fiscal_year, amount_cents, status, ready_at)"
        " VALUES ('TH-EGOV-2027-000001', 2027, 10, $1, now())"
    )
    await pool.execute(insert, "reserved")
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute(insert, "committed")
    await pool.execute("UPDATE reservations SET status = 'released'")
    await pool.execute(insert, "reserved")  # after a release, a new reservation is allowed


async def test_the_ledger_is_append_only(pool: asyncpg.Pool) -> None:
    await open_year(pool, 2027, 10_000)
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("UPDATE ledger SET amount_cents = 1")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("DELETE FROM ledger")


async def test_first_come_first_served_then_waitlist_with_positions(pool: asyncpg.Pool) -> None:
    await open_year(pool, 2027, 250)
    for n in (1, 2, 3, 4):
        assert await deliver(pool, reviewed(n, 100), NOW) == "handled"
    events = await staged(pool)
    assert [d.application_id for d in of_type(events, ApplicationDecided)] == [app_id(1), app_id(2)]
    assert all(d.decision.value == "approved" for d in of_type(events, ApplicationDecided))
    waiting = of_type(events, ApplicationWaitlisted)
    assert [(w.application_id, w.position, w.reason) for w in waiting] == [
        (app_id(3), 1, WaitlistReason.INSUFFICIENT_FUNDS),
        (app_id(4), 2, WaitlistReason.INSUFFICIENT_FUNDS),
    ]
    await assert_invariants(pool)


async def test_a_redelivered_event_changes_nothing(pool: asyncpg.Pool) -> None:
    await open_year(pool, 2027, 1000)
    event = reviewed(1, 100)
    assert await deliver(pool, event, NOW) == "handled"
    before = len(await staged(pool))
    assert await deliver(pool, event, NOW) == "duplicate"
    assert len(await staged(pool)) == before
    assert await pool.fetchval("SELECT reserved_cents + committed_cents FROM pots") == 100


async def test_a_second_review_result_for_the_same_application_decides_nothing_new(pool: asyncpg.Pool) -> None:
    await open_year(pool, 2027, 1000)
    await deliver(pool, reviewed(1, 100), NOW)
    await deliver(pool, reviewed(1, 100), NOW)  # same application, new event id
    assert len(of_type(await staged(pool), ApplicationDecided)) == 1
    assert await pool.fetchval("SELECT committed_cents FROM pots") == 100


async def test_ineligible_applications_are_rejected_with_the_failed_rules(pool: asyncpg.Pool) -> None:
    await deliver(pool, reviewed(7, 100, outcome=ReviewOutcome.INELIGIBLE), NOW)
    [decision] = of_type(await staged(pool), ApplicationDecided)
    assert (decision.decision.value, decision.reasons, decision.amount_cents) == ("rejected", ["R05-grant-limits"], 0)


async def test_withdrawing_a_reserved_application_promotes_the_first_waiting_one(pool: asyncpg.Pool) -> None:
    await open_year(pool, 2027, 100, HOLD)
    for n in (1, 2, 3):
        await deliver(pool, reviewed(n, 100), HOLD)
    assert await pool.fetchval("SELECT reserved_cents FROM pots") == 100
    await pool.execute("DELETE FROM outbox")
    await deliver(pool, withdrawn(1), HOLD)
    events = await staged(pool)
    assert [(r.application_id, r.amount_cents) for r in of_type(events, FundsReleased)] == [(app_id(1), 100)]
    assert [r.application_id for r in of_type(events, FundsReserved)] == [app_id(2)]
    releases = [e for e in events if e.is_a(FundsReleased)]
    promotion = next(e for e in events if e.is_a(FundsReserved))
    assert promotion.causationid == releases[0].causationid, "the promotion names the withdrawal as its cause"
    statuses = dict(await pool.fetch("SELECT application_id, status FROM line"))
    assert statuses == {app_id(1): "withdrawn", app_id(2): "reserved", app_id(3): "waiting"}
    await assert_invariants(pool)


async def test_a_reservation_says_whether_its_grant_notice_waits_for_a_withdrawal_window(pool: asyncpg.Pool) -> None:
    await open_year(pool, 2027, 300)
    await deliver(pool, reviewed(1, 100), NOW)
    await deliver(pool, reviewed(2, 100), HOLD)
    reservations = {r.application_id: r.provisional for r in of_type(await staged(pool), FundsReserved)}
    assert reservations == {app_id(1): False, app_id(2): True}, "notify tells a provisional one on its own"


async def test_a_withdrawal_before_review_keeps_the_application_out_of_line(pool: asyncpg.Pool) -> None:
    await open_year(pool, 2027, 1000)
    await deliver(pool, withdrawn(5), NOW)
    await deliver(pool, reviewed(5, 100), NOW)
    assert await pool.fetchval("SELECT count(*) FROM line") == 0
    assert await pool.fetchval("SELECT available_cents FROM pots") == 1000


async def test_strict_order_does_not_let_a_smaller_later_application_jump(pool: asyncpg.Pool) -> None:
    await open_year(pool, 2027, 150)
    await open_year(pool, 2028, 100)
    await deliver(pool, reviewed(1, 100), NOW)
    await deliver(pool, reviewed(2, 100), NOW)  # does not fit: 50 left
    await deliver(pool, reviewed(3, 40), NOW)  # would fit, but must wait behind 2
    await deliver(pool, reviewed(4, 100, years={2028: 100}), NOW)  # another year's line is not blocked
    approved = [d.application_id for d in of_type(await staged(pool), ApplicationDecided)]
    assert approved == [app_id(1), app_id(4)]


async def test_first_fit_serves_a_later_application_that_fits(pool: asyncpg.Pool) -> None:
    line = LineSettings(policy="first_fit", commit_after_seconds=0)
    await open_year(pool, 2027, 150, line)
    for n, amount in ((1, 100), (2, 100), (3, 40)):
        await deliver(pool, reviewed(n, amount), line)
    approved = [d.application_id for d in of_type(await staged(pool), ApplicationDecided)]
    assert approved == [app_id(1), app_id(3)]


async def test_raising_the_pot_serves_the_line_and_lowering_stops_at_what_is_held(pool: asyncpg.Pool) -> None:
    await open_year(pool, 2027, 100)
    await deliver(pool, reviewed(1, 100), NOW)
    await deliver(pool, reviewed(2, 100), NOW)
    with pytest.raises(Refused) as refused:
        async with pool.acquire() as conn, conn.transaction():
            await admin.adjust_pot(conn, 2027, 99, "admin:test", NOW)
    assert refused.value.code == "pot.below_commitments"
    async with pool.acquire() as conn, conn.transaction():
        promoted = await admin.adjust_pot(conn, 2027, 200, "admin:test", NOW)
    assert [d.application_id for d in of_type([o.envelope for o in promoted], ApplicationDecided)] == [app_id(2)]
    assert await pool.fetchval("SELECT array[ledger.movement] FROM ledger WHERE movement = 'raised'") == ["raised"]
    await assert_invariants(pool)


async def test_a_paused_category_waits_without_blocking_and_is_served_on_resume(pool: asyncpg.Pool) -> None:
    await open_year(pool, 2027, 1000)
    await deliver(pool, reviewed(1, 100, category="e_akte"), NOW)  # paused in the rules file
    await deliver(pool, reviewed(2, 100), NOW)
    events = await staged(pool)
    assert [(w.application_id, w.reason) for w in of_type(events, ApplicationWaitlisted)] == [
        (app_id(1), WaitlistReason.CATEGORY_PAUSED)
    ]
    assert [d.application_id for d in of_type(events, ApplicationDecided)] == [app_id(2)]
    async with pool.acquire() as conn, conn.transaction():
        served = await admin.set_category(conn, "e_akte", True, "admin:test", NOW)
    assert [d.application_id for d in of_type([o.envelope for o in served], ApplicationDecided)] == [app_id(1)]


@pytest.mark.parametrize("policy", ["carry_over", "reject"])
async def test_closing_a_year_carries_over_or_rejects_what_waits(pool: asyncpg.Pool, policy: str) -> None:
    line = LineSettings(policy="strict", commit_after_seconds=0, year_close_policy=policy)
    await open_year(pool, 2027, 100, line)
    await deliver(pool, reviewed(1, 100), line)
    await deliver(pool, reviewed(2, 100), line)
    await pool.execute("DELETE FROM outbox")
    async with pool.acquire() as conn, conn.transaction():
        out = await admin.close_fiscal_year(conn, 2027, "admin:test", line)
    decisions = of_type([o.envelope for o in out], ApplicationDecided)
    if policy == "reject":
        assert [(d.application_id, d.reasons) for d in decisions] == [(app_id(2), ["fiscal_year_closed"])]
        return
    assert decisions == []
    funding = await pool.fetchval("SELECT funding FROM line WHERE application_id = $1", app_id(2))
    assert funding == '{"2028": 100}'
    await open_year(pool, 2028, 500, line)
    assert await pool.fetchval("SELECT status FROM line WHERE application_id = $1", app_id(2)) == "approved"


async def test_race_exactly_k_reserved_in_order_under_concurrency_and_duplicates(pool: asyncpg.Pool) -> None:
    """200 eligible applications arrive concurrently, shuffled, some twice; the pot fits k of them."""
    line = LineSettings(policy="strict", commit_after_seconds=0)
    for round_ in range(5):
        await reset(pool)
        k = random.randint(20, 180)
        await open_year(pool, 2027, k * 100, line)
        # The partitions have not been read past these places yet: nothing is decided on arrival.
        await pool.execute("DELETE FROM arrival_progress")
        events = [reviewed(n, 100) for n in range(1, 201)]
        deliveries = events + random.sample(events, 60)
        random.shuffle(deliveries)
        outcomes = await asyncio.gather(*(deliver(pool, e, line) for e in deliveries))
        assert outcomes.count("duplicate") == 60
        assert await pool.fetchval("SELECT count(*) FROM line WHERE status <> 'waiting'") == 0
        # Every partition read past them; two instances' line servers race to serve the line.
        await arrivals.everything_arrived(pool, line.partitions)
        servers = [LineServer(pool, relay=None, line=line, interval=0.1) for _ in range(2)]  # type: ignore[arg-type]
        await asyncio.gather(*(s.tick() for s in servers))
        approved = await pool.fetch("SELECT application_id FROM line WHERE status = 'approved' ORDER BY 1")
        assert [r[0] for r in approved] == [app_id(n) for n in range(1, k + 1)], f"round {round_}, k={k}"
        waiting = of_type(await staged(pool), ApplicationWaitlisted)
        assert [(w.application_id, w.position) for w in waiting] == [(app_id(n), n - k) for n in range(k + 1, 201)]
        await assert_invariants(pool)
