"""Intake's SQL: portals, idempotency records, application numbers and the status read model."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import asyncpg

from services.intake.domain import STATUS_RANK


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def portal_for_token(conn: asyncpg.Connection | asyncpg.Pool, token: str) -> str | None:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT portal_id FROM portals WHERE token_sha256 = $1 AND revoked_at IS NULL", token_digest(token)
    )


async def next_application_number(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    return await conn.fetchval("SELECT nextval('application_number')")  # type: ignore[no-any-return]


async def claim_idempotency_key(
    conn: asyncpg.Connection | asyncpg.Pool,
    portal_id: str,
    key: str,
    body_sha256: bytes,
    application_id: str,
    event_id: str,
    received_at: datetime,
) -> asyncpg.Record:
    """Insert the key, or return the row another request inserted first."""
    row = await conn.fetchrow(
        "INSERT INTO idempotency_keys (portal_id, idempotency_key, body_sha256, application_id, event_id, received_at)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING *",
        portal_id,
        key,
        body_sha256,
        application_id,
        event_id,
        received_at,
    )
    if row is not None:
        return row
    return await conn.fetchrow(
        "SELECT * FROM idempotency_keys WHERE portal_id = $1 AND idempotency_key = $2", portal_id, key
    )


async def idempotency_record(conn: asyncpg.Pool, portal_id: str, key: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM idempotency_keys WHERE portal_id = $1 AND idempotency_key = $2", portal_id, key
    )


async def store_response(conn: asyncpg.Pool, portal_id: str, key: str, response: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE idempotency_keys SET response = $3 WHERE portal_id = $1 AND idempotency_key = $2",
        portal_id,
        key,
        json.dumps(response),
    )


async def upsert_status(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    application_id: str,
    portal_id: str,
    applicant_ags: str,
    category: str,
    amount_cents: int,
    received_at: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO application_status (application_id, portal_id, applicant_ags, category, amount_cents,"
        " status, status_rank, received_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, 'received', $6, $7, $7) ON CONFLICT (application_id) DO NOTHING",
        application_id,
        portal_id,
        applicant_ags,
        category,
        amount_cents,
        STATUS_RANK["received"],
        received_at,
    )


async def advance_status(conn: asyncpg.Connection, application_id: str, status: str, occurred_at: datetime) -> None:
    """Move forward only: a late event never overwrites a later state."""
    await conn.execute(
        "UPDATE application_status SET status = $2, status_rank = $3, updated_at = $4"
        " WHERE application_id = $1 AND status_rank <= $3",
        application_id,
        status,
        STATUS_RANK[status],
        occurred_at,
    )


async def add_timeline_entry(
    conn: asyncpg.Connection,
    event_id: str,
    application_id: str,
    event_type: str,
    status: str,
    occurred_at: datetime,
    detail: dict[str, Any],
) -> None:
    await conn.execute(
        "INSERT INTO application_timeline (event_id, application_id, event_type, status, occurred_at, detail)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        event_id,
        application_id,
        event_type,
        status,
        occurred_at,
        json.dumps(detail),
    )


async def application_view(conn: asyncpg.Pool, application_id: str, portal_id: str) -> dict[str, Any] | None:
    """Public fields only; another portal's application is indistinguishable from a missing one."""
    row = await conn.fetchrow(
        "SELECT * FROM application_status WHERE application_id = $1 AND portal_id = $2", application_id, portal_id
    )
    if row is None:
        return None
    timeline = await conn.fetch(
        "SELECT event_type, status, occurred_at, detail FROM application_timeline"
        " WHERE application_id = $1 ORDER BY occurred_at, event_id",
        application_id,
    )
    return {
        "application_id": row["application_id"],
        "status": row["status"],
        "category": row["category"],
        "requested_amount_cents": row["amount_cents"],
        "received_at": row["received_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "timeline": [
            {
                "type": t["event_type"],
                "status": t["status"],
                "time": t["occurred_at"].isoformat(),
                **json.loads(t["detail"]),
            }
            for t in timeline
        ],
    }
