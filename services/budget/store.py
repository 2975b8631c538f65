"""Budget's SQL. Money moves only here, and the table constraints check every move."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtime.locks import AdvisoryLock
from services.budget.domain import QueuedApplication

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    import asyncpg

# Serialises decisions about the line across instances: one planner at a time sees the whole line.


async def lock_line(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", AdvisoryLock.BUDGET_LINE)


# --- categories and pots ---------------------------------------------------------


async def seed_categories(conn: asyncpg.Pool, open_by_category: dict[str, bool]) -> None:
    await conn.executemany(
        "INSERT INTO categories (category, open, changed_by) VALUES ($1, $2, 'rules-file') ON CONFLICT DO NOTHING",
        list(open_by_category.items()),
    )


async def paused_categories(conn: asyncpg.Connection) -> set[str]:
    return {r["category"] for r in await conn.fetch("SELECT category FROM categories WHERE NOT open")}


async def set_category_open(conn: asyncpg.Connection, category: str, is_open: bool, actor: str) -> bool:
    """False when the category is unknown or already in that state."""
    changed = await conn.fetchval(
        "UPDATE categories SET open = $2, changed_by = $3, changed_at = now()"
        " WHERE category = $1 AND open <> $2 RETURNING true",
        category,
        is_open,
        actor,
    )
    return bool(changed)


async def category_exists(conn: asyncpg.Connection, category: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM categories WHERE category = $1", category))


async def available_by_year(conn: asyncpg.Connection) -> dict[int, int]:
    rows = await conn.fetch("SELECT fiscal_year, available_cents FROM pots WHERE NOT closed")
    return {r["fiscal_year"]: r["available_cents"] for r in rows}


async def pot(conn: asyncpg.Connection, year: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM pots WHERE fiscal_year = $1 FOR UPDATE", year)


async def open_pot(conn: asyncpg.Connection, year: int, pot_cents: int, actor: str, cause: str | None) -> bool:
    created = await conn.fetchval(
        "INSERT INTO pots (fiscal_year, pot_cents, available_cents, opened_by) VALUES ($1, $2, $2, $3)"
        " ON CONFLICT DO NOTHING RETURNING true",
        year,
        pot_cents,
        actor,
    )
    if created:
        await append_ledger(conn, year, None, "opened", pot_cents, actor, cause)
    return bool(created)


async def adjust_pot(conn: asyncpg.Connection, year: int, new_pot: int, actor: str, cause: str) -> int:
    """Set the pot; returns the previous amount. The constraints refuse a pot below what is held."""
    previous: int = await conn.fetchval("SELECT pot_cents FROM pots WHERE fiscal_year = $1", year)
    await conn.execute(
        "UPDATE pots SET pot_cents = $2, available_cents = available_cents + ($2 - pot_cents) WHERE fiscal_year = $1",
        year,
        new_pot,
    )
    movement = "raised" if new_pot >= previous else "lowered"
    await append_ledger(conn, year, None, movement, abs(new_pot - previous), actor, cause)
    return previous


async def close_pot(conn: asyncpg.Connection, year: int) -> None:
    await conn.execute("UPDATE pots SET closed = true WHERE fiscal_year = $1", year)


async def append_ledger(
    conn: asyncpg.Connection,
    year: int,
    application_id: str | None,
    movement: str,
    amount: int,
    actor: str,
    cause: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO ledger (fiscal_year, application_id, movement, amount_cents, actor, cause_event_id)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        year,
        application_id,
        movement,
        amount,
        actor,
        cause,
    )


# --- the line ----------------------------------------------------------------------


@dataclass(frozen=True)
class LineEntry:
    application: QueuedApplication
    status: str
    review: str
    told_position: int | None
    rules_version: str | None
    cause_event_id: str


def _entry(row: asyncpg.Record, frontier: datetime | None = None) -> LineEntry:
    app = QueuedApplication(
        application_id=row["application_id"],
        place_at=row["place_at"],
        received_at=row["received_at"],
        category=row["category"],
        funding={int(y): c for y, c in json.loads(row["funding"]).items()},
        in_review=row["review"] == "pending",
        settled=frontier is not None and row["place_at"] < frontier,
    )
    return LineEntry(
        app, row["status"], row["review"], row["told_position"], row["rules_version"], row["cause_event_id"]
    )


def _funding_json(funding: Mapping[int, int]) -> str:
    return json.dumps({str(y): c for y, c in sorted(funding.items())})


async def join_line(
    conn: asyncpg.Connection,
    app: QueuedApplication,
    rules_version: str | None,
    cause: str,
    *,
    complete: bool = True,
) -> bool:
    """Take the application's place; False if it has one already or was withdrawn before it came.
    An application not ``complete`` stands in line without a place until ``complete_place``."""
    joined = await conn.fetchval(
        "INSERT INTO line (application_id, place_at, received_at, category, funding, review, rules_version,"
        " cause_event_id, status) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9"
        " WHERE NOT EXISTS (SELECT 1 FROM withdrawals WHERE application_id = $1)"
        " ON CONFLICT DO NOTHING RETURNING true",
        app.application_id,
        app.place_at,
        app.received_at,
        app.category,
        _funding_json(app.funding),
        "pending" if app.in_review else "eligible",
        rules_version,
        cause,
        "waiting" if complete else "incomplete",
    )
    return bool(joined)


async def move_place(conn: asyncpg.Connection, application_id: str, place_at: datetime) -> None:
    """Complete again, later (requested documents supplied): it waits at its new place."""
    await conn.execute(
        "UPDATE line SET status = 'waiting', place_at = $2, updated_at = now() WHERE application_id = $1",
        application_id,
        place_at,
    )


async def complete_place(conn: asyncpg.Connection, application_id: str, place_at: datetime) -> bool:
    """The incomplete application got its place (its complete time) and waits now; False if it was not
    incomplete (completed before, or never in line)."""
    done = await conn.fetchval(
        "UPDATE line SET status = 'waiting', place_at = $2, updated_at = now()"
        " WHERE application_id = $1 AND status = 'incomplete' RETURNING true",
        application_id,
        place_at,
    )
    return bool(done)


async def line_entry(conn: asyncpg.Connection, application_id: str) -> LineEntry | None:
    row = await conn.fetchrow("SELECT * FROM line WHERE application_id = $1 FOR UPDATE", application_id)
    return _entry(row) if row else None


async def waiting_line(conn: asyncpg.Connection, frontier: datetime | None) -> list[LineEntry]:
    """Everyone waiting without money, in line order; ``settled`` once the frontier has passed the place."""
    rows = await conn.fetch(
        "SELECT * FROM line WHERE status = 'waiting' ORDER BY place_at, received_at, application_id"
    )
    return [_entry(r, frontier) for r in rows]


async def standing_in_line(conn: asyncpg.Connection, year: int) -> list[LineEntry]:
    """Everyone still waiting for, or holding an earmark in, this fiscal year's money, in line order."""
    rows = await conn.fetch(
        "SELECT * FROM line WHERE status IN ('waiting', 'earmarked') AND funding ? $1"
        " ORDER BY place_at, received_at, application_id",
        str(year),
    )
    return [_entry(r) for r in rows]


async def has_untold_arrivals(conn: asyncpg.Connection | asyncpg.Pool, frontier: datetime | None) -> bool:
    if frontier is None:
        return False
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM line WHERE status = 'waiting' AND told_position IS NULL AND place_at < $1)",
            frontier,
        )
    )


async def due_for_commit(
    conn: asyncpg.Connection, commit_after_seconds: float, seen_until: datetime | None
) -> list[LineEntry]:
    """Reservations past their withdrawal window that the arrival frontier has passed (``seen_until``):
    a withdrawal published before the reservation has reached budget by then."""
    if seen_until is None:
        return []
    rows = await conn.fetch(
        "SELECT * FROM line WHERE status = 'reserved' AND reserved_at <= now() - make_interval(secs => $1)"
        " AND reserved_at < $2 ORDER BY reserved_at LIMIT 500",
        commit_after_seconds,
        seen_until,
    )
    return [_entry(r) for r in rows]


async def line_is_settled(conn: asyncpg.Pool) -> bool:
    """No place waits to be decided and no reservation to be committed: only an event can change that."""
    return not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM line WHERE (status = 'waiting' AND told_position IS NULL) OR status = 'reserved')"
    )


async def has_due_commits(conn: asyncpg.Pool, commit_after_seconds: float, seen_until: datetime | None) -> bool:
    if seen_until is None:
        return False
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM line WHERE status = 'reserved'"
            " AND reserved_at <= now() - make_interval(secs => $1) AND reserved_at < $2)",
            commit_after_seconds,
            seen_until,
        )
    )


async def set_line_status(conn: asyncpg.Connection, application_id: str, status: str) -> None:
    await conn.execute(
        "UPDATE line SET status = $2, updated_at = now(),"
        " reserved_at = CASE WHEN $2 = 'reserved' THEN now() ELSE reserved_at END WHERE application_id = $1",
        application_id,
        status,
    )


async def found_eligible(
    conn: asyncpg.Connection, application_id: str, funding: Mapping[int, int], rules_version: str, cause: str
) -> None:
    """Review is done: the entry keeps its place; grant notices name this review and its rules."""
    await conn.execute(
        "UPDATE line SET review = 'eligible', funding = $2, rules_version = $3, cause_event_id = $4,"
        " updated_at = now() WHERE application_id = $1",
        application_id,
        _funding_json(funding),
        rules_version,
        cause,
    )


async def tell_position(conn: asyncpg.Connection, application_id: str, position: int) -> None:
    await conn.execute("UPDATE line SET told_position = $2 WHERE application_id = $1", application_id, position)


async def move_funding(conn: asyncpg.Connection, application_id: str, funding: dict[int, int]) -> None:
    await conn.execute(
        "UPDATE line SET funding = $2, told_position = NULL, updated_at = now() WHERE application_id = $1",
        application_id,
        _funding_json(funding),
    )


async def was_withdrawn(conn: asyncpg.Connection, application_id: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM withdrawals WHERE application_id = $1", application_id))


async def remember_withdrawal(conn: asyncpg.Connection, application_id: str) -> None:
    await conn.execute("INSERT INTO withdrawals (application_id) VALUES ($1) ON CONFLICT DO NOTHING", application_id)


# --- earmarks and reservations -------------------------------------------------------


# What a hold moves, by kind: statements spelled out, never assembled.
HOLD_FROM_AVAILABLE = {
    "earmarked": "UPDATE pots SET available_cents = available_cents - $2, earmarked_cents = earmarked_cents + $2"
    " WHERE fiscal_year = $1",
    "reserved": "UPDATE pots SET available_cents = available_cents - $2, reserved_cents = reserved_cents + $2"
    " WHERE fiscal_year = $1",
}
RELEASE_TO_AVAILABLE = {
    "earmarked": "UPDATE pots SET earmarked_cents = earmarked_cents - $2, available_cents = available_cents + $2"
    " WHERE fiscal_year = $1",
    "reserved": "UPDATE pots SET reserved_cents = reserved_cents - $2, available_cents = available_cents + $2"
    " WHERE fiscal_year = $1",
}


async def earmark(
    conn: asyncpg.Connection, app_id: str, year: int, amount: int, place_at: datetime, cause: str
) -> None:
    """Set money aside for an application in review; the constraints reject an over-commitment."""
    await _hold(conn, app_id, year, amount, place_at, cause, "earmarked")


async def reserve(
    conn: asyncpg.Connection, app_id: str, year: int, amount: int, place_at: datetime, cause: str
) -> None:
    """Move money from available to reserved; the constraints reject an over-commitment."""
    await _hold(conn, app_id, year, amount, place_at, cause, "reserved")


async def _hold(
    conn: asyncpg.Connection, app_id: str, year: int, amount: int, place_at: datetime, cause: str, status: str
) -> None:
    await conn.execute(HOLD_FROM_AVAILABLE[status], year, amount)
    await conn.execute(
        "INSERT INTO reservations (application_id, fiscal_year, amount_cents, status, ready_at)"
        " VALUES ($1, $2, $3, $4, $5)",
        app_id,
        year,
        amount,
        status,
        place_at,
    )
    await append_ledger(conn, year, app_id, status, amount, "budget", cause)


async def reserve_earmarked(conn: asyncpg.Connection, app_id: str, cause: str) -> list[tuple[int, int]]:
    """Eligible: every earmark of the application becomes its reservation; returns (year, amount)."""
    rows = await conn.fetch(
        "UPDATE reservations SET status = 'reserved', updated_at = now()"
        " WHERE application_id = $1 AND status = 'earmarked' RETURNING fiscal_year, amount_cents",
        app_id,
    )
    for r in rows:
        await conn.execute(
            "UPDATE pots SET earmarked_cents = earmarked_cents - $2, reserved_cents = reserved_cents + $2"
            " WHERE fiscal_year = $1",
            r["fiscal_year"],
            r["amount_cents"],
        )
        await append_ledger(conn, r["fiscal_year"], app_id, "reserved", r["amount_cents"], "budget", cause)
    return sorted((r["fiscal_year"], r["amount_cents"]) for r in rows)


async def commit(conn: asyncpg.Connection, app_id: str, year: int, amount: int, cause: str) -> None:
    await conn.execute(
        "UPDATE pots SET reserved_cents = reserved_cents - $2, committed_cents = committed_cents + $2"
        " WHERE fiscal_year = $1",
        year,
        amount,
    )
    await conn.execute(
        "UPDATE reservations SET status = 'committed', updated_at = now()"
        " WHERE application_id = $1 AND fiscal_year = $2 AND status = 'reserved'",
        app_id,
        year,
    )
    await append_ledger(conn, year, app_id, "committed", amount, "budget", cause)


@dataclass(frozen=True, order=True)
class Released:
    fiscal_year: int
    amount_cents: int
    earmarked: bool  # an earmark (held during review), not a reservation


async def release(conn: asyncpg.Connection, app_id: str, actor: str, cause: str) -> list[Released]:
    """Release every earmark and uncommitted reservation of the application."""
    rows = await conn.fetch(
        "UPDATE reservations r SET status = 'released', updated_at = now()"
        " FROM (SELECT id, status AS was FROM reservations WHERE application_id = $1"
        "       AND status IN ('earmarked', 'reserved') FOR UPDATE) old"
        " WHERE r.id = old.id RETURNING r.fiscal_year, r.amount_cents, old.was",
        app_id,
    )
    released = sorted(Released(r["fiscal_year"], r["amount_cents"], r["was"] == "earmarked") for r in rows)
    for money in released:
        statement = RELEASE_TO_AVAILABLE["earmarked" if money.earmarked else "reserved"]
        await conn.execute(statement, money.fiscal_year, money.amount_cents)
        await append_ledger(conn, money.fiscal_year, app_id, "released", money.amount_cents, actor, cause)
    return released


# --- views ---------------------------------------------------------------------------


async def pots_view(conn: asyncpg.Connection | asyncpg.Pool) -> list[dict[str, int | bool]]:
    rows = await conn.fetch(
        "SELECT fiscal_year, pot_cents, available_cents, earmarked_cents, reserved_cents, committed_cents, closed"
        " FROM pots ORDER BY fiscal_year"
    )
    return [dict(r) for r in rows]


async def waitlist_view(conn: asyncpg.Connection | asyncpg.Pool) -> list[dict[str, object]]:
    rows = await conn.fetch(
        "SELECT application_id, category, funding, place_at, received_at, review, told_position FROM line"
        " WHERE status = 'waiting' ORDER BY place_at, received_at, application_id"
    )
    return [
        {
            "position": i,
            "application_id": r["application_id"],
            "category": r["category"],
            "funding": {int(y): c for y, c in json.loads(r["funding"]).items()},
            "place_at": r["place_at"].isoformat(),
            "received_at": r["received_at"].isoformat(),
            "in_review": r["review"] == "pending",
        }
        for i, r in enumerate(rows, start=1)
    ]
