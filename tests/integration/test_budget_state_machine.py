"""A hypothesis state machine drives the budget against the real PostgreSQL and checks the
ledger's promises after every step: reserve, duplicate delivery, withdraw, reject, commit,
raise and lower the pot, pause and resume, close the year.

``BUDGET_STATEFUL_EXAMPLES`` raises the number of examples (``make test-budget-deep``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from runtime.db import migrate
from runtime.refusals import Refused
from schemas.envelope import Envelope
from schemas.events import ReviewOutcome
from services.budget import admin, store
from services.budget.domain import plan_service
from services.budget.line import LineSettings, commit_due
from tests.integration.budget_support import MIGRATIONS, assert_invariants, deliver, reset, reviewed, withdrawn
from tests.support import TEST_SLOT, fresh_database, required_env

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("BUDGET_STATEFUL_EXAMPLES", "1000"))
YEARS = (2027, 2028)
CATEGORIES = ("dms_eservices", "schulung")
# Reservations are held (not committed at once), so withdrawals and year closes meet reserved money.
LINE = LineSettings(policy="strict", settle_seconds=0, commit_after_seconds=3600, year_close_policy="carry_over")


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

    @initialize(pot=st.integers(0, 20).map(lambda x: x * 50))
    def empty_ledger_with_one_pot(self, pot: int) -> None:
        Harness.run(reset(Harness.pool))
        Harness.run(Harness.pool.execute("UPDATE categories SET open = true"))
        Harness.run(_admin(lambda c: admin.open_fiscal_year(c, YEARS[0], pot, "admin:sm", LINE)))

    @rule(year=st.sampled_from(YEARS), pot=st.integers(0, 20).map(lambda x: x * 50))
    def open_year(self, year: int, pot: int) -> None:
        Harness.run(_admin(lambda c: admin.open_fiscal_year(c, year, pot, "admin:sm", LINE)))

    @rule(
        years_needed=st.sampled_from([YEARS[:1], YEARS[:1], YEARS[1:], YEARS]),
        amounts=st.lists(st.integers(1, 8).map(lambda x: x * 50), min_size=2, max_size=2),
        category=st.sampled_from(CATEGORIES),
        eligible=st.booleans(),
    )
    def application_reviewed(
        self, years_needed: tuple[int, ...], amounts: list[int], category: str, eligible: bool
    ) -> None:
        n = self.next_number
        self.next_number += 1
        years = dict(zip(years_needed, amounts, strict=False))
        outcome = ReviewOutcome.ELIGIBLE if eligible else ReviewOutcome.INELIGIBLE
        envelope = reviewed(n, sum(years.values()), years=years, outcome=outcome, category=category)
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
        """Aimed at the release path: withdraw one that holds money right now."""
        holding = Harness.run(
            Harness.pool.fetch("SELECT application_id FROM line WHERE status = 'reserved' ORDER BY 1")
        )
        if holding:
            chosen = data.draw(st.sampled_from([int(r[0].rsplit("-", 1)[1]) for r in holding]))
            Harness.run(deliver(Harness.pool, withdrawn(chosen), LINE))

    @rule()
    def grant_notices_issued(self) -> None:
        async def commit_all() -> None:
            async with Harness.pool.acquire() as conn, conn.transaction():
                await store.lock_line(conn)
                await commit_due(conn, LineSettings(LINE.policy, 0, 0, LINE.year_close_policy))

        Harness.run(commit_all())

    @rule(year=st.sampled_from(YEARS), pot=st.integers(0, 30).map(lambda x: x * 50))
    def pot_adjusted(self, year: int, pot: int) -> None:
        Harness.run(_admin(lambda c: admin.adjust_pot(c, year, pot, "admin:sm", LINE)))

    @rule(category=st.sampled_from(CATEGORIES), is_open=st.booleans())
    def category_switched(self, category: str, is_open: bool) -> None:
        Harness.run(_admin(lambda c: admin.set_category(c, category, is_open, "admin:sm", LINE)))

    @rule(year=st.sampled_from(YEARS))
    def year_closed(self, year: int) -> None:
        Harness.run(_admin(lambda c: admin.close_fiscal_year(c, year, "admin:sm", LINE)))

    @invariant()
    def ledger_holds(self) -> None:
        Harness.run(assert_invariants(Harness.pool))

    @invariant()
    def nothing_servable_is_left_waiting(self) -> None:
        async def check() -> None:
            async with Harness.pool.acquire() as conn:
                waiting = await store.waiting_line(conn, 0)
                plan = plan_service(
                    [e.application for e in waiting],
                    await store.available_by_year(conn),
                    await store.paused_categories(conn),
                    LINE.policy,
                )
            assert plan.served == [], [a.application_id for a in plan.served]

        Harness.run(check())

    @invariant()
    def at_most_one_decision_and_none_for_the_waiting(self) -> None:
        both = Harness.run(
            Harness.pool.fetch(
                "SELECT l.application_id FROM line l JOIN decisions d USING (application_id) WHERE l.status = 'waiting'"
            )
        )
        assert not both, both


@pytest.mark.timeout(900)
def test_budget_state_machine() -> None:
    Harness.open()
    try:
        machine = BudgetMachine.TestCase
        machine.settings = settings(
            max_examples=EXAMPLES,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        machine().runTest()
    finally:
        Harness.close()
