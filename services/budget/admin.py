"""Budget administration commands: each changes the pots under the line lock, emits an event
naming the administrator, and serves the line with whatever money it freed."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from runtime.outbox import Outgoing
from runtime.refusals import Refusal, Refused
from schemas.envelope import Envelope, Event, utc_now
from schemas.events import (
    CategoryPaused,
    CategoryResumed,
    Decision,
    FiscalYearClosed,
    FiscalYearOpened,
    PotAdjusted,
)
from schemas.topics import BUDGET_ADMIN
from services.budget import store
from services.budget.domain import final_decision
from services.budget.line import (
    EVERYTHING_SEEN,
    SOURCE,
    LineSettings,
    commit_due,
    decide,
    release,
    serve_line,
)

if TYPE_CHECKING:
    import asyncpg


def admin_event(event: Event, key: str, actor: str) -> tuple[Envelope, Outgoing]:
    envelope = Envelope.wrap(event, source=SOURCE, subject=key, actor=actor)
    return envelope, Outgoing(BUDGET_ADMIN, key, envelope)


async def open_fiscal_year(
    conn: asyncpg.Connection, year: int, pot_cents: int, actor: str, line: LineSettings
) -> list[Outgoing]:
    await store.lock_line(conn)
    envelope, outgoing = admin_event(FiscalYearOpened(fiscal_year=year, pot_cents=pot_cents), str(year), actor)
    if not await store.open_pot(conn, year, pot_cents, actor, envelope.id):
        raise Refused(Refusal.CONFLICT, "fiscal_year.already_open", f"Fiscal year {year} is already open")
    return [outgoing, *await serve_line(conn, line, envelope)]


async def adjust_pot(
    conn: asyncpg.Connection, year: int, pot_cents: int, actor: str, line: LineSettings
) -> list[Outgoing]:
    await store.lock_line(conn)
    current = await store.pot(conn, year)
    if current is None or current["closed"]:
        raise Refused(Refusal.NOT_FOUND, "fiscal_year.not_open", f"Fiscal year {year} is not open")
    held = current["earmarked_cents"] + current["reserved_cents"] + current["committed_cents"]
    if pot_cents < held:
        raise Refused(
            Refusal.CONFLICT,
            "pot.below_commitments",
            f"The pot cannot go below what is earmarked, reserved and committed ({held} cents)",
        )
    adjusted = PotAdjusted(fiscal_year=year, previous_pot_cents=current["pot_cents"], pot_cents=pot_cents)
    envelope, outgoing = admin_event(adjusted, str(year), actor)
    await store.adjust_pot(conn, year, pot_cents, actor, envelope.id)
    return [outgoing, *await serve_line(conn, line, envelope)]


async def set_category(
    conn: asyncpg.Connection, category: str, is_open: bool, actor: str, line: LineSettings
) -> list[Outgoing]:
    await store.lock_line(conn)
    if not await store.category_exists(conn, category):
        raise Refused(Refusal.NOT_FOUND, "category.unknown", f"Unknown category {category}")
    if not await store.set_category_open(conn, category, is_open, actor):
        raise Refused(
            Refusal.CONFLICT, "category.unchanged", f"Category {category} is already {'open' if is_open else 'paused'}"
        )
    event: Event = CategoryResumed(category=category) if is_open else CategoryPaused(category=category)
    envelope, outgoing = admin_event(event, f"category:{category}", actor)
    return [outgoing, *await serve_line(conn, line, envelope)]


async def close_fiscal_year(conn: asyncpg.Connection, year: int, actor: str, line: LineSettings) -> list[Outgoing]:
    """The year's money lapses. Reservations still open get their grant notice now; applications
    still waiting for this year, or holding an earmark in it, are carried over to the next year or
    rejected, per the setting."""
    await store.lock_line(conn)
    current = await store.pot(conn, year)
    if current is None or current["closed"]:
        raise Refused(Refusal.NOT_FOUND, "fiscal_year.not_open", f"Fiscal year {year} is not open")
    closed = FiscalYearClosed(fiscal_year=year, waiting_policy=line.year_close_policy)
    envelope, outgoing = admin_event(closed, str(year), actor)
    out = [
        outgoing,
        *await commit_due(conn, replace(line, commit_after_seconds=0.0), seen_until=EVERYTHING_SEEN),
    ]
    for entry in await store.standing_in_line(conn, year):
        app = entry.application
        # An earmark in the closing year lapses with it; the application keeps its place.
        out.extend(await release(conn, app.application_id, "fiscal_year_closed", actor, envelope))
        if line.year_close_policy == "carry_over":
            funding = dict(app.funding)
            funding[year + 1] = funding.get(year + 1, 0) + funding.pop(year)
            await store.set_line_status(conn, app.application_id, "waiting")
            await store.move_funding(conn, app.application_id, funding)
            continue
        await store.set_line_status(conn, app.application_id, "rejected")
        rejected = final_decision(
            app.application_id,
            Decision.REJECTED,
            reasons=["fiscal_year_closed"],
            rules_version=entry.rules_version,
            received_at=app.received_at,
            decided_at=utc_now(),
        )
        out.extend(await decide(conn, rejected, envelope.id, line.signer))
    await store.close_pot(conn, year)
    return [*out, *await serve_line(conn, line, envelope)]
