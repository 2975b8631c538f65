"""Helpers for the budget suites: a fresh ledger database, review events, and the invariants."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from runtime.consumer import handle_once
from runtime.db import migrate
from schemas.application import FundingYear
from schemas.envelope import Envelope
from schemas.events import (
    ApplicationCompleted,
    ApplicationReceived,
    ApplicationReviewed,
    ApplicationWithdrawn,
    ReviewOutcome,
    RuleFinding,
)
from schemas.rules import load_rules
from services.budget import arrivals, store
from services.budget.handlers import routes
from services.budget.line import LineSettings
from tests.support import fresh_database
from tests.unit.factories import funding_application

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "budget" / "migrations"
BASE = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)  # in the past: settled
CONSUMER = "budget-line"


async def budget_pool(admin_dsn: str, name: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(await fresh_database(admin_dsn, name), min_size=1, max_size=30)
    await migrate(pool, MIGRATIONS)
    await store.seed_categories(pool, {c.id: c.open for c in load_rules().categories})
    # No consumer feeds these suites: every place before now has arrived (a test that needs the
    # frontier itself empties arrival_progress).
    await arrivals.everything_arrived(pool, LineSettings().partitions)
    try:
        yield pool
    finally:
        await pool.close()


def app_id(n: int) -> str:
    return f"TH-EGOV-2027-{n:06d}"


def reviewed(
    n: int,
    amount: int,
    *,
    years: dict[int, int] | None = None,
    ready_offset_ms: int | None = None,
    outcome: ReviewOutcome = ReviewOutcome.ELIGIBLE,
    category: str = "dms_eservices",
    place: datetime | None = None,
) -> Envelope:
    """Application number n took its place (was received, complete) n milliseconds after BASE (unless
    told otherwise); review finished a while later, which must not matter."""
    funding = years or {2027: amount}
    place = place or place_time(n, ready_offset_ms)
    event = ApplicationReviewed(
        application_id=app_id(n),
        outcome=outcome,
        rules_version="egov-2024-v1",
        findings=[
            RuleFinding(
                rule_id="R05-grant-limits",
                passed=outcome is not ReviewOutcome.INELIGIBLE,
                message_de="x",
                message_en="x",
            )
        ],
        reviewer="automatic",
        category=category,
        amount_cents=sum(funding.values()),
        funding=[FundingYear(fiscal_year=y, amount_cents=c) for y, c in sorted(funding.items())],
        received_at=place,
        place_at=place,
        ready_at=place + timedelta(seconds=30),
    )
    return Envelope.wrap(event, source="/egov/review", subject=app_id(n))


def place_time(n: int, offset_ms: int | None = None) -> datetime:
    return BASE + timedelta(milliseconds=n if offset_ms is None else offset_ms)


def received(
    n: int,
    amount: int,
    *,
    years: dict[int, int] | None = None,
    place_offset_ms: int | None = None,
    category: str = "dms_eservices",
    place: datetime | None = None,
) -> Envelope:
    """Application number n as intake publishes it: its receipt, complete, at its place time
    (``place``, or ``place_offset_ms`` after BASE: a place in the past suits suites that feed budget by hand)."""
    funding = years or {2027: amount}
    place = place or place_time(n, place_offset_ms)
    application = funding_application(
        {
            "project.category": category,
            "project.requested_amount_cents": sum(funding.values()),
            "project.funding": [{"fiscal_year": y, "amount_cents": c} for y, c in sorted(funding.items())],
            "attachments": [],  # complete at receipt: the place is the receipt time
        }
    )
    event = ApplicationReceived(
        application_id=app_id(n),
        portal_id="portal-a",
        received_at=place,
        place_at=place,
        category_open=True,
        application=application,
    )
    return Envelope.wrap(event, source="/egov/intake", subject=app_id(n), time=place)


def announcing_attachments(receipt: Envelope) -> Envelope:
    """The same receipt, of an application that announces two attachments: not complete yet, no place."""
    event = receipt.payload(ApplicationReceived)
    attachments = funding_application().attachments
    application = event.application.model_copy(update={"attachments": attachments})
    incomplete = event.model_copy(update={"application": application, "place_at": None})
    return Envelope.wrap(incomplete, source="/egov/intake", subject=event.application_id, time=receipt.time)


def completed(n: int, at: datetime) -> Envelope:
    """The last announced attachment of application n arrived at ``at``: its place."""
    event = ApplicationCompleted(application_id=app_id(n), completed_at=at, attachments=2)
    return Envelope.wrap(event, source="/egov/intake", subject=app_id(n), time=at)


def withdrawn(n: int) -> Envelope:
    event = ApplicationWithdrawn(application_id=app_id(n), portal_id="portal-a")
    return Envelope.wrap(event, source="/egov/intake", subject=app_id(n))


async def deliver(pool: asyncpg.Pool, envelope: Envelope, line: LineSettings) -> str:
    """Exactly what the budget consumer does with one record."""
    return await handle_once(pool, CONSUMER, routes(line)[envelope.type], envelope)


async def staged(pool: asyncpg.Pool) -> list[Envelope]:
    rows = await pool.fetch("SELECT value FROM outbox ORDER BY id")
    return [Envelope.from_bytes(bytes(r["value"])) for r in rows]


async def assert_invariants(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    """The ledger's promises, checked from the tables after any step."""
    for pot in await conn.fetch("SELECT * FROM pots"):
        year = pot["fiscal_year"]
        held = pot["earmarked_cents"] + pot["reserved_cents"] + pot["committed_cents"]
        assert pot["available_cents"] + held == pot["pot_cents"], pot
        assert held <= pot["pot_cents"], pot
        sums = await conn.fetchrow(
            "SELECT coalesce(sum(amount_cents) FILTER (WHERE status = 'earmarked'), 0) AS earmarked,"
            " coalesce(sum(amount_cents) FILTER (WHERE status = 'reserved'), 0) AS reserved,"
            " coalesce(sum(amount_cents) FILTER (WHERE status = 'committed'), 0) AS committed"
            " FROM reservations WHERE fiscal_year = $1",
            year,
        )
        in_pot = (pot["earmarked_cents"], pot["reserved_cents"], pot["committed_cents"])
        assert (sums["earmarked"], sums["reserved"], sums["committed"]) == in_pot, year
    doubled = await conn.fetch(
        "SELECT application_id, fiscal_year FROM reservations WHERE status <> 'released'"
        " GROUP BY 1, 2 HAVING count(*) > 1"
    )
    assert not doubled, doubled
    # Earmarked, reserved or approved in line <=> money of that kind is held for it.
    mismatched = await conn.fetch(
        "SELECT l.application_id, l.status FROM line l WHERE (l.status IN ('earmarked', 'reserved', 'approved'))"
        " <> EXISTS (SELECT 1 FROM reservations r WHERE r.application_id = l.application_id AND r.status <> 'released')"
        " OR (l.status = 'earmarked') <> EXISTS (SELECT 1 FROM reservations r"
        "     WHERE r.application_id = l.application_id AND r.status = 'earmarked')"
    )
    assert not mismatched, mismatched
    # Only an application still in review holds an earmark.
    assert not await conn.fetch("SELECT 1 FROM line WHERE status = 'earmarked' AND review <> 'pending'")


async def reset(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "TRUNCATE pots, reservations, ledger, line, withdrawals, decisions, processed_events, outbox"
        " RESTART IDENTITY CASCADE"
    )
    for category in load_rules().categories:
        await pool.execute("UPDATE categories SET open = $2 WHERE category = $1", category.id, category.open)
