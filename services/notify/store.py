"""Notify's SQL: recipients, notices, and the delivery schedule."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg

from services.notify.domain import Notice


async def remember_recipient(conn: asyncpg.Connection, application_id: str, portal_id: str, email: str) -> None:
    await conn.execute(
        "INSERT INTO recipients (application_id, portal_id, email) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        application_id,
        portal_id,
        email,
    )


async def add_notice(conn: asyncpg.Connection, notice_id: uuid.UUID, channel: str, notice: Notice, cause: str) -> None:
    await conn.execute(
        "INSERT INTO notices (notice_id, application_id, notice_type, channel, subject, body_text, body_html,"
        " cause_event_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        notice_id,
        notice.application_id,
        notice.notice_type,
        channel,
        notice.subject,
        notice.text,
        notice.html,
        cause,
    )


async def claim_due(pool: asyncpg.Pool, limit: int, lease: timedelta) -> list[asyncpg.Record]:
    """Take due notices for one delivery attempt. The lease hides them from other instances
    meanwhile; if this process dies mid-delivery they come due again when it expires."""
    return await pool.fetch(  # type: ignore[no-any-return]
        "UPDATE notices n SET next_attempt_at = now() + $2::interval FROM recipients r"
        " WHERE r.application_id = n.application_id AND n.notice_id IN ("
        "  SELECT notice_id FROM notices WHERE status = 'pending' AND next_attempt_at <= now()"
        "  ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
        " RETURNING n.*, r.email",
        limit,
        lease,
    )


async def mark_delivered(conn: asyncpg.Connection, notice_id: uuid.UUID) -> int | None:
    """The attempt count, or None if another instance already recorded the outcome."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        "UPDATE notices SET status = 'delivered', attempts = attempts + 1, delivered_at = now(), last_error = NULL"
        " WHERE notice_id = $1 AND status = 'pending' RETURNING attempts",
        notice_id,
    )


async def mark_attempt_failed(
    conn: asyncpg.Connection, notice_id: uuid.UUID, error: str, retry_in: timedelta | None
) -> int | None:
    """Schedule the next attempt, or give up when ``retry_in`` is None."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        "UPDATE notices SET attempts = attempts + 1, last_error = $2,"
        " status = CASE WHEN $3::interval IS NULL THEN 'failed' ELSE 'pending' END,"
        " next_attempt_at = now() + coalesce($3::interval, interval '0')"
        " WHERE notice_id = $1 AND status = 'pending' RETURNING attempts",
        notice_id,
        error[:500],
        retry_in,
    )
