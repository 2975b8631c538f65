"""Budget's SQL. Money moves only here, and the table constraints check every move."""

from __future__ import annotations

import json
from datetime import datetime

import asyncpg

from services.budget.domain import QueuedApplication

# Serialises decisions about the line across instances: one planner at a time sees the whole line.
LINE_LOCK = 7_316_010


async def lock_line(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", LINE_LOCK)


async def seed_categories(conn: asyncpg.Pool, open_by_category: dict[str, bool]) -> None:
    await conn.executemany(
        "INSERT INTO categories (category, open, changed_by) VALUES ($1, $2, 'rules-file') ON CONFLICT DO NOTHING",
        list(open_by_category.items()),
    )


async def paused_categories(conn: asyncpg.Connection) -> set[str]:
    return {r["category"] for r in await conn.fetch("SELECT category FROM categories WHERE NOT open")}


async def available_by_year(conn: asyncpg.Connection) -> dict[int, int]:
    return {
        r["fiscal_year"]: r["available_cents"]
        for r in await conn.fetch("SELECT fiscal_year, available_cents FROM pots")
    }


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


async def join_line(conn: asyncpg.Connection, app: QueuedApplication, rules_version: str, cause: str) -> bool:
    joined = await conn.fetchval(
        "INSERT INTO line (application_id, ready_at, received_at, category, funding, rules_version, cause_event_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING true",
        app.application_id,
        app.ready_at,
        app.received_at,
        app.category,
        json.dumps({str(y): c for y, c in app.funding.items()}),
        rules_version,
        cause,
    )
    return bool(joined)


def _queued(row: asyncpg.Record) -> QueuedApplication:
    return QueuedApplication(
        application_id=row["application_id"],
        ready_at=row["ready_at"],
        received_at=row["received_at"],
        category=row["category"],
        funding={int(y): c for y, c in json.loads(row["funding"]).items()},
    )


async def waiting_line(conn: asyncpg.Connection) -> list[tuple[QueuedApplication, int | None, str, str]]:
    """(application, position last told, rules version, cause event id) for everyone waiting."""
    rows = await conn.fetch(
        "SELECT * FROM line WHERE status = 'waiting' ORDER BY ready_at, received_at, application_id"
    )
    return [(_queued(r), r["told_position"], r["rules_version"], r["cause_event_id"]) for r in rows]


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


async def leave_line(conn: asyncpg.Connection, app_id: str, status: str) -> bool:
    done = await conn.fetchval(
        "UPDATE line SET status = $2, updated_at = now() WHERE application_id = $1 AND status = 'waiting'"
        " RETURNING true",
        app_id,
        status,
    )
    return bool(done)


async def tell_position(conn: asyncpg.Connection, app_id: str, position: int) -> None:
    await conn.execute("UPDATE line SET told_position = $2 WHERE application_id = $1", app_id, position)


async def pots_view(conn: asyncpg.Pool) -> list[dict[str, int]]:
    rows = await conn.fetch(
        "SELECT fiscal_year, pot_cents, available_cents, reserved_cents, committed_cents FROM pots ORDER BY fiscal_year"
    )
    return [dict(r) for r in rows]
