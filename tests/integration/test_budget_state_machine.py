"""A hypothesis state machine drives the budget against the real PostgreSQL and checks the
ledger's promises after every step: receipts that take a place and earmark, reviews that finish in
any order (eligible, ineligible, manual), reserve, duplicate delivery, withdraw, release, commit,
raise and lower the pot, pause and resume, close the year, and the partitions read past the places.

Places arrive out of order (each a random time after the frontier), so the line's order is tested
against the applicant's time, not the order budget happened to see them: ``served_in_place_order``
checks from the tables that no later place holds money a waiting earlier place needed. A mutation that
serves by processing time (arrival order at budget) is caught by it
(``test_serving_by_processing_time_is_caught``).

``BUDGET_STATEFUL_EXAMPLES`` raises the number of examples (``make test-budget-deep``).
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from runtime.db import migrate
from runtime.refusals import Refused
from schemas.envelope import Envelope
from schemas.events import ReviewOutcome
from services.budget import admin, arrivals, domain, store
from services.budget.domain import plan_service
from services.budget.line import EVERYTHING_SEEN, LineSettings, commit_due, serve_line
from tests.integration.budget_support import (
    BASE,
    MIGRATIONS,
    assert_invariants,
    deliver,
    received,
    reset,
    reviewed,
    withdrawn,
)
from tests.support import TEST_SLOT, fresh_database, required_env

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("BUDGET_STATEFUL_EXAMPLES", "1000"))
YEARS = (2027, 2028)
CATEGORIES = ("dms_eservices", "schulung")
# Reservations are held (not committed at once), so withdrawals and year closes meet reserved money.
LINE = LineSettings(policy="strict", commit_after_seconds=3600, year_close_policy="carry_over")


class Harness:
    """One event loop and one pool for all examples; each example starts from empty tables."""

    loop: asyncio.AbstractEventLoop
    pool: asyncpg.Pool

    @classmethod
    def open(cls) -> None:
        cls.loop = asyncio.new_event_loop()

        async def connect() -> asyncpg.Pool:
            dsn = await fresh_database(required_env("EGOV_TEST_PG_DSN"), f"egov_test{TEST_SLOT}_budget_stateful")
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
            await migrate(pool, MIGRATIONS)
            await store.seed_categories(pool, dict.fromkeys(CATEGORIES, True))
            return pool

        cls.pool = cls.loop.run_until_complete(connect())

    @classmethod
    def close(cls) -> None:
        cls.loop.run_until_complete(cls.pool.close())
        cls.loop.close()

    @classmethod
    def run(cls, coro: Any) -> Any:
        return cls.loop.run_until_complete(coro)


async def _admin(command: Any, *args: Any) -> bool:
    try:
        async with Harness.pool.acquire() as conn, conn.transaction():
            await stage_nothing(await command(conn, *args))
    except Refused:
        return False
    return True


async def stage_nothing(_: Any) -> None:
    """Outgoing events are not needed here; the tables are what is checked."""


class BudgetMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.next_number = 1
        self.delivered: list[Envelope] = []
        self.known: list[int] = []
        self.in_review: dict[int, tuple[dict[int, int], str]] = {}  # received, review not yet delivered
        self.places: dict[int, int] = {}
        self.frontier_ms = 0  # every place before BASE + this has arrived
        self.latest_place_ms = 0
        # Exempt from the order check: a paused category waits without blocking; a year close moves money.
        self.ever_paused: set[str] = set()
        self.year_was_closed = False

    # Pots that fit some of what is asked, not all: where the order decides who gets the money.
    @initialize(pot=st.integers(3, 20).map(lambda x: x * 50))
    def empty_ledger_with_one_pot(self, pot: int) -> None:
        Harness.run(reset(Harness.pool))
        Harness.run(Harness.pool.execute("DELETE FROM arrival_progress"))
        Harness.run(Harness.pool.execute("UPDATE categories SET open = true"))
        Harness.run(_admin(lambda c: admin.open_fiscal_year(c, YEARS[0], pot, "admin:sm", LINE)))

    def place_after_frontier(self, offset: int) -> int:
        """A place no earlier than the frontier: it may still arrive (never late), in any order."""
        place = self.frontier_ms + offset
        self.latest_place_ms = max(self.latest_place_ms, place)
        return place

    @rule(
        burst=st.lists(
            st.tuples(
                st.sampled_from([YEARS[:1], YEARS[:1], YEARS[1:], YEARS]),
                st.lists(st.integers(1, 8).map(lambda x: x * 50), min_size=2, max_size=2),
                st.sampled_from(CATEGORIES),
                st.integers(1, 20),
            ),
            min_size=1,
            max_size=4,
        )
    )
    def applications_received(self, burst: list[tuple[tuple[int, ...], list[int], str, int]]) -> None:
        """Receipts of a burst reach budget in an order that need not be their places' order."""
        for years_needed, amounts, category, offset in burst:
            n = self.next_number
            self.next_number += 1
            years = dict(zip(years_needed, amounts, strict=False))
            place = self.place_after_frontier(offset)
            envelope = received(n, 0, years=years, place_offset_ms=place, category=category)
            self.delivered.append(envelope)
            self.known.append(n)
            self.in_review[n] = (years, category)
            self.places[n] = place
            Harness.run(deliver(Harness.pool, envelope, LINE))

    @rule(data=st.data(), outcome=st.sampled_from(list(ReviewOutcome)))
    def review_finished(self, data: st.DataObject, outcome: ReviewOutcome) -> None:
        """Reviews finish in any order, some with a caseworker first: none of that may move a place."""
        if not self.in_review:
            return
        n = data.draw(st.sampled_from(sorted(self.in_review)))
        years, category = self.in_review[n] if outcome is ReviewOutcome.NEEDS_MANUAL_REVIEW else self.in_review.pop(n)
        envelope = reviewed(
            n, sum(years.values()), years=years, outcome=outcome, category=category, ready_offset_ms=self.places[n]
        )
        self.delivered.append(envelope)
        Harness.run(deliver(Harness.pool, envelope, LINE))

    @rule(step=st.one_of(st.just(None), st.integers(0, 40)))
    def partitions_read_past(self, step: int | None) -> None:
        """Watermarks further on (None: past every place delivered so far): the frontier moves, and
        the line server decides what it passed."""
        past_all = self.latest_place_ms + 1
        self.frontier_ms = past_all if step is None else min(past_all, self.frontier_ms + step)
        at = BASE + timedelta(milliseconds=self.frontier_ms)

        async def advance() -> None:
            async with Harness.pool.acquire() as conn, conn.transaction():
                await arrivals.record_watermarks(conn, [(p, at) for p in range(LINE.partitions)])
                await store.lock_line(conn)
                await serve_line(conn, LINE, None)

        Harness.run(advance())

    @rule(year=st.sampled_from(YEARS), pot=st.integers(0, 20).map(lambda x: x * 50))
    def open_year(self, year: int, pot: int) -> None:
        Harness.run(_admin(lambda c: admin.open_fiscal_year(c, year, pot, "admin:sm", LINE)))

    @rule(
        years_needed=st.sampled_from([YEARS[:1], YEARS[:1], YEARS[1:], YEARS]),
        amounts=st.lists(st.integers(1, 8).map(lambda x: x * 50), min_size=2, max_size=2),
        category=st.sampled_from(CATEGORIES),
        eligible=st.booleans(),
        offset=st.integers(1, 20),
    )
    def application_reviewed(
        self, years_needed: tuple[int, ...], amounts: list[int], category: str, eligible: bool, offset: int
    ) -> None:
        """A review whose receipt has not reached budget yet: it takes the place itself."""
        n = self.next_number
        self.next_number += 1
        years = dict(zip(years_needed, amounts, strict=False))
        outcome = ReviewOutcome.ELIGIBLE if eligible else ReviewOutcome.INELIGIBLE
        place = self.place_after_frontier(offset)
        self.places[n] = place
        envelope = reviewed(
            n, sum(years.values()), years=years, outcome=outcome, category=category, ready_offset_ms=place
        )
        self.delivered.append(envelope)
        self.known.append(n)
        Harness.run(deliver(Harness.pool, envelope, LINE))

    @rule(data=st.data())
    def redelivered(self, data: st.DataObject) -> None:
        if self.delivered:
            envelope = data.draw(st.sampled_from(self.delivered))
            assert Harness.run(deliver(Harness.pool, envelope, LINE)) == "duplicate"

    @rule(data=st.data())
    def withdrawn(self, data: st.DataObject) -> None:
        if self.known:
            Harness.run(deliver(Harness.pool, withdrawn(data.draw(st.sampled_from(self.known))), LINE))

    @rule(data=st.data())
    def reserved_application_withdrawn(self, data: st.DataObject) -> None:
        """Aimed at the release path: withdraw one that holds money (earmarked or reserved) right now."""
        holding = Harness.run(
            Harness.pool.fetch("SELECT application_id FROM line WHERE status IN ('earmarked', 'reserved') ORDER BY 1")
        )
        if holding:
            chosen = data.draw(st.sampled_from([int(r[0].rsplit("-", 1)[1]) for r in holding]))
            Harness.run(deliver(Harness.pool, withdrawn(chosen), LINE))

    @rule()
    def grant_notices_issued(self) -> None:
        async def commit_all() -> None:
            async with Harness.pool.acquire() as conn, conn.transaction():
                await store.lock_line(conn)
                await commit_due(conn, LineSettings(LINE.policy, 0, LINE.year_close_policy), seen_until=EVERYTHING_SEEN)

        Harness.run(commit_all())

    @rule(year=st.sampled_from(YEARS), pot=st.integers(0, 30).map(lambda x: x * 50))
    def pot_adjusted(self, year: int, pot: int) -> None:
        Harness.run(_admin(lambda c: admin.adjust_pot(c, year, pot, "admin:sm", LINE)))

    @rule(category=st.sampled_from(CATEGORIES), is_open=st.booleans())
    def category_switched(self, category: str, is_open: bool) -> None:
        if not is_open:
            self.ever_paused.add(category)
        Harness.run(_admin(lambda c: admin.set_category(c, category, is_open, "admin:sm", LINE)))

    @rule(year=st.sampled_from(YEARS))
    def year_closed(self, year: int) -> None:
        self.year_was_closed = True
        Harness.run(_admin(lambda c: admin.close_fiscal_year(c, year, "admin:sm", LINE)))

    @invariant()
    def ledger_holds(self) -> None:
        Harness.run(assert_invariants(Harness.pool))

    @invariant()
    def nothing_servable_is_left_waiting(self) -> None:
        async def check() -> None:
            async with Harness.pool.acquire() as conn:
                waiting = await store.waiting_line(conn, await arrivals.frontier(conn, LINE.partitions))
                plan = plan_service(
                    [e.application for e in waiting],
                    await store.available_by_year(conn),
                    await store.paused_categories(conn),
                    LINE.policy,
                )
            assert plan.served == [], [a.application_id for a in plan.served]

        Harness.run(check())

    @invariant()
    def served_in_place_order(self) -> None:
        """Strict: while an earlier place waits for money from a year, no later place holds money from it."""
        if self.year_was_closed:
            return
        inversions = Harness.run(
            Harness.pool.fetch(
                "SELECT w.application_id AS waits, h.application_id AS holds FROM line w"
                " JOIN line h"
                " ON (h.place_at, h.received_at, h.application_id) > (w.place_at, w.received_at, w.application_id)"
                " JOIN reservations r ON r.application_id = h.application_id AND r.status <> 'released'"
                " WHERE w.status = 'waiting' AND w.told_position IS NOT NULL AND w.funding ? r.fiscal_year::text"
                " AND NOT w.category = ANY($1::text[])",
                sorted(self.ever_paused),
            )
        )
        assert not inversions, [dict(r) for r in inversions]

    @invariant()
    def at_most_one_decision_and_none_for_the_waiting(self) -> None:
        both = Harness.run(
            Harness.pool.fetch(
                "SELECT l.application_id FROM line l JOIN decisions d USING (application_id) WHERE l.status = 'waiting'"
            )
        )
        assert not both, both


def run_machine(examples: int, **overrides: Any) -> None:
    Harness.open()
    try:
        machine = BudgetMachine.TestCase
        machine.settings = settings(
            max_examples=examples,
            stateful_step_count=14,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            **overrides,
        )
        machine().runTest()
    finally:
        Harness.close()


@pytest.mark.timeout(900)
def test_budget_state_machine() -> None:
    run_machine(EXAMPLES)


async def by_arrival_at_budget(conn: asyncpg.Connection, frontier: Any) -> list[store.LineEntry]:
    rows = await conn.fetch("SELECT * FROM line WHERE status = 'waiting' ORDER BY joined_at")
    return [store._entry(r, frontier) for r in rows]


@pytest.mark.timeout(600)
def test_serving_by_processing_time_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mutation the fair line exists against: serve whoever reached budget first."""
    monkeypatch.setattr(store, "waiting_line", by_arrival_at_budget)
    monkeypatch.setattr(domain, "in_line", list)
    with pytest.raises(AssertionError, match="waits"):
        run_machine(400, phases=[Phase.explicit, Phase.generate])
