"""Review's SQL: the reviews table and the double-funding lookup."""

from __future__ import annotations

import json
from datetime import datetime

import asyncpg

from schemas.events import ApplicationReceived, ReviewOutcome, RuleFinding


async def already_reviewed(conn: asyncpg.Connection, application_id: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM reviews WHERE application_id = $1", application_id))


async def competing_applications(conn: asyncpg.Connection, received: ApplicationReceived) -> tuple[str, ...]:
    """Open applications sharing a municipality, the category and a fiscal year with this one."""
    app = received.application
    rows = await conn.fetch(
        "SELECT application_id FROM reviews WHERE open AND applicant_ags && $1 AND category = $2"
        " AND fiscal_years && $3 AND outcome <> 'ineligible' AND application_id <> $4 ORDER BY application_id",
        [app.applicant.ags, *(p.ags for p in app.partners)],
        app.project.category,
        [f.fiscal_year for f in app.project.funding],
        received.application_id,
    )
    return tuple(r["application_id"] for r in rows)


async def record_review(
    conn: asyncpg.Connection,
    received: ApplicationReceived,
    outcome: ReviewOutcome,
    rules_version: str,
    findings: list[RuleFinding],
    reviewed_at: datetime,
) -> None:
    app = received.application
    await conn.execute(
        "INSERT INTO reviews (application_id, applicant_ags, category, fiscal_years, amount_cents, outcome,"
        " rules_version, findings, received_at, reviewed_at, received_event, open)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        received.application_id,
        [app.applicant.ags, *(p.ags for p in app.partners)],
        app.project.category,
        [f.fiscal_year for f in app.project.funding],
        app.project.requested_amount_cents,
        outcome.value,
        rules_version,
        json.dumps([f.model_dump() for f in findings]),
        received.received_at,
        reviewed_at,
        received.model_dump_json(),
        outcome is not ReviewOutcome.INELIGIBLE,
    )
