"""Notify's SQL: recipients, callback endpoints, notices, and the delivery schedule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtime.locks import AdvisoryLock

if TYPE_CHECKING:
    import uuid
    from datetime import datetime, timedelta

    import asyncpg

    from services.notify.domain import Notice

EMAIL = "email"
# One claim at a time across instances, so per-destination limits hold for the whole service.
# For claims and outcomes only: a commit lost in a database crash costs one more attempt under the
# same notice id, which receivers de-duplicate, so these transactions need not wait for the disk.
RELAXED = "SET LOCAL synchronous_commit = off"


def callback_destination(portal_id: str) -> str:
    return f"callback:{portal_id}"


@dataclass(frozen=True)
class StoredNotice:
    notice_id: uuid.UUID
    channel: str
    destination: str | None
    event_key: str
    cause_event_id: str
    cause_time: datetime  # the causing event's time: the application's notices go out in this order
    portal_id: str | None = None
    callback_body: bytes | None = None


# --- recipients and endpoints -----------------------------------------------------------------


async def remember_recipient(conn: asyncpg.Connection, application_id: str, portal_id: str, email: str) -> None:
    """Also settles notices stored before the receipt was seen (topics are not ordered among each
    other): e-mails can go now; callbacks go to the portal if it has an endpoint, else they were
    never owed."""
    await conn.execute(
        "INSERT INTO recipients (application_id, portal_id, email) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        application_id,
        portal_id,
        email,
    )
    await conn.execute(
        "UPDATE notices SET destination = $2 WHERE application_id = $1 AND channel = $2 AND destination IS NULL",
        application_id,
        EMAIL,
    )
    unresolved = "WHERE application_id = $1 AND channel = 'callback' AND destination IS NULL"
    if await has_endpoint(conn, portal_id):
        await conn.execute(
            f"UPDATE notices SET portal_id = $2, destination = $3 {unresolved}",  # noqa: S608 - constant text
            application_id,
            portal_id,
            callback_destination(portal_id),
        )
    else:
        await conn.execute(f"DELETE FROM notices {unresolved}", application_id)  # noqa: S608 - constant text


async def portal_of(conn: asyncpg.Connection, application_id: str) -> str | None:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT portal_id FROM recipients WHERE application_id = $1", application_id
    )


async def has_endpoint(conn: asyncpg.Connection, portal_id: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT true FROM callback_endpoints WHERE portal_id = $1 AND revoked_at IS NULL", portal_id
        )
    )


async def register_endpoint(conn: asyncpg.Connection, portal_id: str, url: str, secret: str) -> None:
    """Registering again replaces the URL and the secret (rotation)."""
    await conn.execute(
        "INSERT INTO callback_endpoints (portal_id, url, secret) VALUES ($1, $2, $3) ON CONFLICT (portal_id)"
        " DO UPDATE SET url = EXCLUDED.url, secret = EXCLUDED.secret, created_at = now(), revoked_at = NULL",
        portal_id,
        url,
        secret,
    )


async def revoke_endpoint(conn: asyncpg.Connection, portal_id: str) -> bool:
    return bool(
        await conn.fetchval(
            "UPDATE callback_endpoints SET revoked_at = now() WHERE portal_id = $1 AND revoked_at IS NULL"
            " RETURNING true",
            portal_id,
        )
    )


async def endpoints(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(  # type: ignore[no-any-return]
        "SELECT portal_id, url, created_at, revoked_at FROM callback_endpoints ORDER BY portal_id"
    )


# --- waitlist ------------------------------------------------------------------------------------


async def remember_waitlisted(conn: asyncpg.Connection, application_id: str, amount_cents: int) -> None:
    await conn.execute(
        "INSERT INTO waitlisted (application_id, amount_cents) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        application_id,
        amount_cents,
    )


async def end_waitlist_stay(conn: asyncpg.Connection, application_id: str) -> int | None:
    """The amount the application waited with, the first time money is reserved for it after waiting."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        "UPDATE waitlisted SET promoted = true WHERE application_id = $1 AND NOT promoted RETURNING amount_cents",
        application_id,
    )


# --- reservations held --------------------------------------------------------------------------


async def hold_reservation(conn: asyncpg.Connection, application_id: str, fiscal_year: int) -> None:
    await conn.execute(
        "INSERT INTO reservations_held (application_id, fiscal_year) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        application_id,
        fiscal_year,
    )


async def end_reservation(conn: asyncpg.Connection, application_id: str, fiscal_year: int) -> None:
    """Released or committed: either way no longer money a withdrawal would give back."""
    await conn.execute(
        "DELETE FROM reservations_held WHERE application_id = $1 AND fiscal_year = $2", application_id, fiscal_year
    )


async def holds_reservation(conn: asyncpg.Connection, application_id: str) -> bool:
    return bool(
        await conn.fetchval("SELECT true FROM reservations_held WHERE application_id = $1 LIMIT 1", application_id)
    )


# --- notices -------------------------------------------------------------------------------------


async def add_notice(conn: asyncpg.Connection, notice: Notice, stored: StoredNotice) -> None:
    await conn.execute(
        "INSERT INTO notices (notice_id, application_id, notice_type, channel, subject, body_text, body_html,"
        " cause_event_id, event_key, portal_id, destination, callback_body, cause_time)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING",
        stored.notice_id,
        notice.application_id,
        notice.notice_type,
        stored.channel,
        notice.subject,
        notice.text,
        notice.html,
        stored.cause_event_id,
        stored.event_key,
        stored.portal_id,
        stored.destination,
        stored.callback_body,
        stored.cause_time,
    )


CLAIM = """
WITH RECURSIVE destinations AS (  -- the distinct destinations with pending notices, by index skip scan
    (SELECT destination FROM notices WHERE status = 'pending' AND destination IS NOT NULL
     ORDER BY destination LIMIT 1)
    UNION ALL
    SELECT (SELECT n.destination FROM notices n WHERE n.status = 'pending' AND n.destination > d.destination
            ORDER BY n.destination LIMIT 1)
    FROM destinations d WHERE d.destination IS NOT NULL
), room AS (
    SELECT d.destination,
           CASE WHEN d.destination = 'email' THEN $3::int ELSE $4::int END - (
               SELECT count(*) FROM notices b
               WHERE b.status = 'pending' AND b.destination = d.destination AND b.leased_until > now()
           ) AS free
    FROM destinations d WHERE d.destination IS NOT NULL
), chosen AS (
    SELECT due.notice_id FROM room, LATERAL (
        SELECT n.notice_id, n.next_attempt_at FROM notices n
        WHERE n.status = 'pending' AND n.destination = room.destination AND n.next_attempt_at <= now()
          AND NOT EXISTS (  -- the applicant's order: an earlier notice of its application still to go
              SELECT 1 FROM notices e
              WHERE e.status = 'pending' AND e.application_id = n.application_id AND e.channel = n.channel
                AND (e.cause_time, e.sequence) < (n.cause_time, n.sequence)
          )
        ORDER BY n.next_attempt_at LIMIT greatest(room.free, 0)
    ) due
    ORDER BY due.next_attempt_at LIMIT $1::int
), claimed AS (
    UPDATE notices n SET leased_until = now() + $2::interval, next_attempt_at = now() + $2::interval
    FROM chosen WHERE n.notice_id = chosen.notice_id RETURNING n.*
)
SELECT c.*, r.email, e.url, e.secret FROM claimed c
LEFT JOIN recipients r ON r.application_id = c.application_id
LEFT JOIN callback_endpoints e ON e.portal_id = c.portal_id AND e.revoked_at IS NULL
"""


async def claim_due(
    pool: asyncpg.Pool, limit: int, lease: timedelta, email_cap: int, callback_cap: int
) -> list[asyncpg.Record]:
    """Take due notices for one attempt, at most ``*_cap`` leased per destination (across all
    instances), so a slow receiver ties up only its own notices. A notice waits while an earlier one
    of its application and channel is pending (see migration 004), so each applicant hears in order.
    The lease moves the next attempt to its end: if the process dies mid-attempt, the notice comes
    due again then."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"{RELAXED}; SELECT pg_advisory_xact_lock({int(AdvisoryLock.NOTIFY_CLAIM)})")
        return await conn.fetch(CLAIM, limit, lease, email_cap, callback_cap)  # type: ignore[no-any-return]


async def next_due(pool: asyncpg.Pool) -> datetime | None:
    """When the earliest pending notice comes due (a retry, a lease's end); None when none is pending."""
    due: datetime | None = await pool.fetchval("SELECT min(next_attempt_at) FROM notices WHERE status = 'pending'")
    return due


async def record_deliveries(conn: asyncpg.Connection, notice_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Attempt counts of the notices now delivered; one missing was recorded by another instance
    already (possible only after its lease ran out)."""
    rows = await conn.fetch(
        "UPDATE notices n SET status = 'delivered', attempts = attempts + 1, delivered_at = now(),"
        " last_error = NULL, leased_until = NULL FROM unnest($1::uuid[]) AS d(notice_id)"
        " WHERE n.notice_id = d.notice_id AND n.status = 'pending' RETURNING n.notice_id, n.attempts",
        notice_ids,
    )
    return {r["notice_id"]: r["attempts"] for r in rows}


async def record_failures(
    conn: asyncpg.Connection, failures: list[tuple[uuid.UUID, str, datetime | None]]
) -> dict[uuid.UUID, int]:
    """Schedule each next attempt, or give the notice up where the next attempt is None."""
    rows = await conn.fetch(
        "UPDATE notices n SET attempts = attempts + 1, last_error = f.error, leased_until = NULL,"
        " status = CASE WHEN f.next_at IS NULL THEN 'failed' ELSE 'pending' END,"
        " next_attempt_at = coalesce(f.next_at, now())"
        " FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS f(notice_id, error, next_at)"
        " WHERE n.notice_id = f.notice_id AND n.status = 'pending' RETURNING n.notice_id, n.attempts",
        [f[0] for f in failures],
        [f[1][:500] for f in failures],
        [f[2] for f in failures],
    )
    return {r["notice_id"]: r["attempts"] for r in rows}


async def release(pool: asyncpg.Pool, notice_ids: list[uuid.UUID]) -> None:
    """Hand back leased notices that were never attempted: due at once, for any instance."""
    await pool.execute(
        "UPDATE notices SET leased_until = NULL, next_attempt_at = now()"
        " WHERE notice_id = ANY($1::uuid[]) AND status = 'pending'",
        notice_ids,
    )


async def due_again(conn: asyncpg.Connection, notice_id: uuid.UUID) -> asyncpg.Record | None:
    """A failed notice becomes due again with a fresh attempt budget; its id stays the same."""
    return await conn.fetchrow(
        "UPDATE notices SET status = 'pending', attempts = 0, next_attempt_at = now(), leased_until = NULL,"
        " window_started_at = now() WHERE notice_id = $1 AND status = 'failed'"
        " RETURNING notice_id, notice_type, channel, destination, last_error",
        notice_id,
    )
