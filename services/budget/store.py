"""Budget's SQL. Money moves only here, and the table constraints check every move."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtime.locks import AdvisoryLock
from services.budget.domain import QueuedApplication

if TYPE_CHECKING:
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
    """Set the pot; returns the previous amount. The constraints refuse a pot below reserved + committed."""
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
    told_position: int | None
    rules_version: str
    cause_event_id: str


def _entry(row: asyncpg.Record) -> LineEntry:
    app = QueuedApplication(
        application_id=row["application_id"],
        ready_at=row["ready_at"],
        received_at=row["received_at"],
        category=row["category"],
        funding={int(y): c for y, c in json.loads(row["funding"]).items()},
        settled=row.get("settled", True),
    )
    return LineEntry(app, row["status"], row["told_position"], row["rules_version"], row["cause_event_id"])


async def join_line(conn: asyncpg.Connection, app: QueuedApplication, rules_version: str, cause: str) -> bool:
    joined = await conn.fetchval(
        "INSERT INTO line (application_id, ready_at, received_at, category, funding, rules_version, cause_event_id)"
        " SELECT $1, $2, $3, $4, $5, $6, $7"
        " WHERE NOT EXISTS (SELECT 1 FROM withdrawals WHERE application_id = $1)"
        " ON CONFLICT DO NOTHING RETURNING true",
        app.application_id,
        app.ready_at,
        app.received_at,
        app.category,
        json.dumps({str(y): c for y, c in app.funding.items()}),
        rules_version,
        cause,
    )
    return bool(joined)


async def line_entry(conn: asyncpg.Connection, application_id: str) -> LineEntry | None:
    row = await conn.fetchrow("SELECT * FROM line WHERE application_id = $1 FOR UPDATE", application_id)
    return _entry(row) if row else None


async def waiting_line(conn: asyncpg.Connection, settle_seconds: float) -> list[LineEntry]:
    """Everyone waiting, in line order; ``settled`` once in line for at least ``settle_seconds``."""
    rows = await conn.fetch(
        "SELECT *, joined_at <= clock_timestamp() - make_interval(secs => $1) AS settled"
        " FROM line WHERE status = 'waiting' ORDER BY ready_at, received_at, application_id",
        settle_seconds,
    )
    return [_entry(r) for r in rows]


async def has_untold_arrivals(conn: asyncpg.Connection | asyncpg.Pool, settle_seconds: float) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM line WHERE status = 'waiting' AND told_position IS NULL"
            " AND ready_at <= now() - make_interval(secs => $1))",
            settle_seconds,
        )
    )


async def due_for_commit(conn: asyncpg.Connection, commit_after_seconds: float) -> list[LineEntry]:
    rows = await conn.fetch(
        "SELECT * FROM line WHERE status = 'reserved' AND reserved_at <= now() - make_interval(secs => $1)"
        " ORDER BY reserved_at LIMIT 500",
        commit_after_seconds,
    )
    return [_entry(r) for r in rows]


async def has_due_commits(conn: asyncpg.Pool, commit_after_seconds: float) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM line WHERE status = 'reserved'"
            " AND reserved_at <= now() - make_interval(secs => $1))",
            commit_after_seconds,
        )
    )


async def set_line_status(conn: asyncpg.Connection, application_id: str, status: str) -> None:
    await conn.execute(
        "UPDATE line SET status = $2, updated_at = now(),"
        " reserved_at = CASE WHEN $2 = 'reserved' THEN now() ELSE reserved_at END WHERE application_id = $1",
        application_id,
        status,
    )


async def tell_position(conn: asyncpg.Connection, application_id: str, position: int) -> None:
    await conn.execute("UPDATE line SET told_position = $2 WHERE application_id = $1", application_id, position)


async def move_funding(conn: asyncpg.Connection, application_id: str, funding: dict[int, int]) -> None:
    await conn.execute(
        "UPDATE line SET funding = $2, told_position = NULL, updated_at = now() WHERE application_id = $1",
        application_id,
        json.dumps({str(y): c for y, c in funding.items()}),
    )


async def was_withdrawn(conn: asyncpg.Connection, application_id: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM withdrawals WHERE application_id = $1", application_id))


async def remember_withdrawal(conn: asyncpg.Connection, application_id: str) -> None:
    await conn.execute("INSERT INTO withdrawals (application_id) VALUES ($1) ON CONFLICT DO NOTHING", application_id)


# --- reservations --------------------------------------------------------------------


async def reserve(
    conn: asyncpg.Connection, app_id: str, year: int, amount: int, ready_at: datetime, cause: str
) -> None:
    """Move money from available to reserved; the constraints reject an over-commitment."""
    await conn.execute(
        "UPDATE pots SET available_cents = available_cents - $2, reserved_cents = reserved_cents + $2"
        " WHERE fiscal_year = $1",
        year,
        amount,
    )
    await conn.execute(
        "INSERT INTO reservations (application_id, fiscal_year, amount_cents, status, ready_at)"
        " VALUES ($1, $2, $3, 'reserved', $4)",
        app_id,
        year,
        amount,
        ready_at,
    )
    await append_ledger(conn, year, app_id, "reserved", amount, "budget", cause)


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


async def release(conn: asyncpg.Connection, app_id: str, actor: str, cause: str) -> list[tuple[int, int]]:
    """Release every active, uncommitted reservation of the application; returns (year, amount) released."""
    rows = await conn.fetch(
        "UPDATE reservations SET status = 'released', updated_at = now()"
        " WHERE application_id = $1 AND status = 'reserved' RETURNING fiscal_year, amount_cents",
        app_id,
    )
    for r in rows:
        await conn.execute(
            "UPDATE pots SET reserved_cents = reserved_cents - $2, available_cents = available_cents + $2"
            " WHERE fiscal_year = $1",
            r["fiscal_year"],
            r["amount_cents"],
        )
        await append_ledger(conn, r["fiscal_year"], app_id, "released", r["amount_cents"], actor, cause)
    return [(r["fiscal_year"], r["amount_cents"]) for r in rows]


# --- views ---------------------------------------------------------------------------


async def pots_view(conn: asyncpg.Connection | asyncpg.Pool) -> list[dict[str, int | bool]]:
    rows = await conn.fetch(
        "SELECT fiscal_year, pot_cents, available_cents, reserved_cents, committed_cents, closed"
        " FROM pots ORDER BY fiscal_year"
    )
    return [dict(r) for r in rows]


async def waitlist_view(conn: asyncpg.Connection | asyncpg.Pool) -> list[dict[str, object]]:
    rows = await conn.fetch(
        "SELECT application_id, category, funding, ready_at, received_at, told_position FROM line"
        " WHERE status = 'waiting' ORDER BY ready_at, received_at, application_id"
    )
    return [
        {
            "position": i,
            "application_id": r["application_id"],
            "category": r["category"],
            "funding": {int(y): c for y, c in json.loads(r["funding"]).items()},
            "ready_at": r["ready_at"].isoformat(),
            "received_at": r["received_at"].isoformat(),
        }
        for i, r in enumerate(rows, start=1)
    ]
