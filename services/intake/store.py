"""Intake's SQL: portals, idempotency and quota claims, Kafka-path submissions, and the status read model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import asyncpg

from runtime.locks import AdvisoryLock
from services.intake.domain import STATUS_RANK
from services.intake.policy import fiscal_years

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from datetime import datetime

    from schemas.events import ApplicationReceived

Db: TypeAlias = asyncpg.Connection | asyncpg.Pool
T = TypeVar("T")
DEADLOCK_ATTEMPTS = 5
ZERO = timedelta(0)


# --- portals -------------------------------------------------------------------------------------

PORTAL_COLUMNS = "portal_id, rate_per_second, rate_burst, ags_prefixes"


async def portal_by_digest(conn: Db, digest: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {PORTAL_COLUMNS} FROM portals WHERE token_sha256 = $1 AND revoked_at IS NULL",  # noqa: S608
        digest,
    )


async def portal_by_id(conn: Db, portal_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {PORTAL_COLUMNS} FROM portals WHERE portal_id = $1 AND revoked_at IS NULL",  # noqa: S608
        portal_id,
    )


async def signing_keys(conn: Db, portal_id: str) -> list[bytes]:
    """The keys a portal's Kafka submissions may be signed with now: none if it is unknown or revoked."""
    rows = await conn.fetch(
        "SELECT k.secret FROM portal_signing_keys k JOIN portals p USING (portal_id)"
        " WHERE k.portal_id = $1 AND p.revoked_at IS NULL AND (k.retire_at IS NULL OR k.retire_at > now())"
        " ORDER BY k.created_at DESC",
        portal_id,
    )
    return [bytes(r["secret"]) for r in rows]


# --- application numbers ---------------------------------------------------------------------------


async def application_numbers(conn: Db, count: int) -> list[int]:
    rows = await conn.fetch("SELECT nextval('application_number') AS n FROM generate_series(1, $1)", count)
    return [r["n"] for r in rows]


# --- HTTP submissions: claim before publishing, record after the acknowledgement ---------------------


@dataclass(frozen=True)
class Quota:
    cap: int
    final_rank: int
    pending: timedelta
    # The watermark's claim bound: a receipt time older than this when claimed is moved up to it.
    claim_bound: timedelta


@dataclass(frozen=True)
class Claim:
    """What an HTTP submission claims before it is published."""

    portal_id: str
    key: str | None
    body_sha256: bytes
    application_id: str
    event_id: str
    received_at: datetime
    applicant_ags: str
    fiscal_years: list[int]


# The watermark's gate (services/intake/watermarks.py): the lock taken shared before the clock is read,
# so a watermark computed before this statement took it lies before ``not_before``, and one computed
# after sees this statement's claims committed. MATERIALIZED and OFFSET 0 keep the order: the clock is
# read from the row the lock's subquery returned.
GATE = """
gate AS MATERIALIZED (
    SELECT clock_timestamp() - $1::interval AS not_before
      FROM (SELECT pg_advisory_xact_lock_shared({lock}) OFFSET 0) AS locked
)
"""

_CLAIM = (
    "WITH"
    + GATE.format(lock=AdvisoryLock.INTAKE_WATERMARK.value).replace("$1::", "$12::")
    + """
SELECT c.* FROM gate
CROSS JOIN unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::text[], $6::timestamptz[], $7::text[],
                  $8::text[]) WITH ORDINALITY
         AS r(portal_id, idempotency_key, body_sha256, application_id, event_id, received_at, applicant_ags,
              fiscal_years, n)
CROSS JOIN LATERAL intake_claim(r.portal_id, r.idempotency_key, r.body_sha256, r.application_id, r.event_id,
                                r.received_at, r.applicant_ags, r.fiscal_years::int[], $9, $10, $11,
                                gate.not_before) c
ORDER BY r.n
"""
)


async def claim(conn: Db, quota: Quota, claims: Sequence[Claim]) -> list[asyncpg.Record]:
    """Idempotency key, quota check and pending claim of many submissions in one statement (see
    migration 002), one row per claim. Claims go in applicant order, so concurrent statements take
    the applicants' locks in the same order; a deadlock all the same rolls the statement back whole,
    and it is retried."""
    order = sorted(range(len(claims)), key=lambda i: (claims[i].applicant_ags, i))
    ordered = [claims[i] for i in order]
    arguments = (
        [c.portal_id for c in ordered],
        [c.key for c in ordered],
        [c.body_sha256 for c in ordered],
        [c.application_id for c in ordered],
        [c.event_id for c in ordered],
        [c.received_at for c in ordered],
        [c.applicant_ags for c in ordered],
        [pg_array(c.fiscal_years) for c in ordered],
        quota.cap,
        quota.final_rank,
        quota.pending,
        quota.claim_bound,
    )
    rows = await retry_deadlocks(lambda: conn.fetch(_CLAIM, *arguments))
    answers: list[asyncpg.Record] = [None] * len(claims)
    for position, row in zip(order, rows, strict=True):
        answers[position] = row
    return answers


def pg_array(numbers: list[int]) -> str:
    """An int[] literal: arrays of arrays do not unnest into rows of arrays, text does."""
    return "{" + ",".join(map(str, numbers)) + "}"


async def retry_deadlocks(statement: Callable[[], Awaitable[T]]) -> T:
    """Run a statement that is safe to repeat; PostgreSQL rolled back the one it chose as deadlock victim."""
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            return await statement()
        except asyncpg.DeadlockDetectedError:
            if attempt == DEADLOCK_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


async def idempotency_record(conn: Db, portal_id: str, key: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM idempotency_keys WHERE portal_id = $1 AND idempotency_key = $2", portal_id, key
    )


@dataclass(frozen=True)
class StatusRow:
    """What the status view knows of an application from its received event."""

    application_id: str
    portal_id: str
    applicant_ags: str
    category: str
    amount_cents: int
    received_at: datetime
    fiscal_years: list[int]
    attachments: str  # the announcement as JSON (migration 007): what an upload is checked against

    @classmethod
    def of(cls, event: ApplicationReceived) -> StatusRow:
        project = event.application.project
        return cls(
            application_id=event.application_id,
            portal_id=event.portal_id,
            applicant_ags=event.application.applicant.ags,
            category=project.category,
            amount_cents=project.requested_amount_cents,
            received_at=event.received_at,
            fiscal_years=fiscal_years(event.application),
            attachments=json.dumps([a.model_dump(mode="json") for a in event.application.attachments]),
        )

    def values(self) -> tuple[Any, ...]:
        return (
            self.application_id,
            self.portal_id,
            self.applicant_ags,
            self.category,
            self.amount_cents,
            self.received_at,
            self.fiscal_years,
            STATUS_RANK["received"],
            self.attachments,
        )


_INSERT_STATUS = (
    "INSERT INTO application_status (application_id, portal_id, applicant_ags, category, amount_cents,"
    " received_at, fiscal_years, status, status_rank, updated_at, attachments)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, 'received', $8, $6, $9) ON CONFLICT (application_id) DO NOTHING"
)


@dataclass(frozen=True)
class Accepted:
    """An HTTP submission the broker acknowledged: its status row and the answer for its key."""

    status: StatusRow
    key: str | None
    response: dict[str, Any]


_RECORD_ACCEPTED = """
WITH rows AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::timestamptz[],
                         $7::text[], $8::text[], $9::jsonb[], $11::jsonb[])
        AS r(application_id, portal_id, applicant_ags, category, amount_cents, received_at, fiscal_years,
             idempotency_key, response, attachments)
), status AS (
    INSERT INTO application_status (application_id, portal_id, applicant_ags, category, amount_cents, received_at,
                                    fiscal_years, status, status_rank, updated_at, attachments)
    SELECT application_id, portal_id, applicant_ags, category, amount_cents, received_at, fiscal_years::int[],
           'received', $10, received_at, attachments FROM rows
    ON CONFLICT (application_id) DO NOTHING
), claims AS (
    DELETE FROM pending_claims WHERE application_id IN (SELECT application_id FROM rows)
)
UPDATE idempotency_keys k SET response = r.response FROM rows r
 WHERE k.portal_id = r.portal_id AND k.idempotency_key = r.idempotency_key
"""


async def record_accepted(conn: Db, accepted: Sequence[Accepted]) -> list[None]:
    """After the broker's acknowledgements, in one statement for many submissions: the status rows
    (read-your-writes; the projection adds them too), the pending claims gone, the answers stored
    for their Idempotency-Keys. The statement is idempotent, so a deadlock with the projection
    (which writes the same rows in its own transactions) is simply retried."""
    ordered = sorted(accepted, key=lambda a: a.status.application_id)
    rows = [a.status for a in ordered]
    arguments = (
        [r.application_id for r in rows],
        [r.portal_id for r in rows],
        [r.applicant_ags for r in rows],
        [r.category for r in rows],
        [r.amount_cents for r in rows],
        [r.received_at for r in rows],
        [pg_array(r.fiscal_years) for r in rows],
        [a.key for a in ordered],
        [json.dumps(a.response) for a in ordered],
        STATUS_RANK["received"],
        [r.attachments for r in rows],
    )
    await retry_deadlocks(lambda: conn.execute(_RECORD_ACCEPTED, *arguments))
    return [None] * len(accepted)


# --- Kafka-path submissions ----------------------------------------------------------------------


async def full_year(conn: asyncpg.Connection, applicant_ags: str, fiscal_years: list[int], quota: Quota) -> int | None:
    """The year in which the applicant's quota is used up; locks the applicant until the transaction ends."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT intake_full_year($1, $2, $3, $4, $5)",
        applicant_ags,
        fiscal_years,
        quota.cap,
        quota.final_rank,
        quota.pending,
    )


async def submission(conn: asyncpg.Connection, portal_id: str, submission_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM submissions WHERE portal_id = $1 AND submission_id = $2", portal_id, submission_id
    )


async def record_submission(
    conn: asyncpg.Connection, portal_id: str, submission_id: str, body_sha256: bytes, status: StatusRow, event_id: str
) -> None:
    await conn.execute(
        "INSERT INTO submissions (portal_id, submission_id, body_sha256, application_id, event_id, received_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        portal_id,
        submission_id,
        body_sha256,
        status.application_id,
        event_id,
        status.received_at,
    )
    await upsert_status(conn, status)


# --- the status read model -----------------------------------------------------------------------


async def remember_unacknowledged(conn: Db, portal_id: str, key: str, event: bytes) -> None:
    """The exact event a keyed submission published without an acknowledgement (migration 006)."""
    await conn.execute(
        "UPDATE idempotency_keys SET unacknowledged_event = $3"
        " WHERE portal_id = $1 AND idempotency_key = $2 AND response IS NULL",
        portal_id,
        key,
        event,
    )


_RESTAMP = (
    "WITH"  # noqa: S608 (the lock id is a constant; every value is a parameter)
    + GATE.format(lock=AdvisoryLock.INTAKE_WATERMARK.value).replace("$1::", "$5::")
    + " SELECT r.* FROM gate, intake_restamp($1, $2, $3, $4, gate.not_before) r"
)


async def restamp(
    conn: Db, portal_id: str, key: str, event_id: str, received_at: datetime, claim_bound: timedelta
) -> asyncpg.Record | None:
    """A keyed submission whose first event never landed gets a new receipt time and event id, behind the
    watermark's gate (migration 009); None if the key was answered meanwhile or the time is too old."""
    return await conn.fetchrow(
        _RESTAMP,
        portal_id,
        key,
        event_id,
        received_at,
        claim_bound,
    )


# --- the watermark (services/intake/watermarks.py) --------------------------------------------------


async def hold_watermark(conn: asyncpg.Connection) -> datetime:
    """Take the watermark lock shared until the transaction ends; the database's clock, read after it."""
    at: datetime = await conn.fetchval(
        "SELECT clock_timestamp() FROM (SELECT pg_advisory_xact_lock_shared($1) OFFSET 0) AS locked",
        AdvisoryLock.INTAKE_WATERMARK.value,
    )
    return at


async def unappended(conn: asyncpg.Connection, topic: str, hold: timedelta) -> asyncpg.Record:
    """The earliest place time of what intake has not yet appended: pending HTTP claims (within the hold),
    withdrawals being published, unrelayed outbox rows for the topic; and the database's clock. The
    caller holds the watermark lock exclusively, and this is a statement of its own, so its snapshot
    is taken after every claim that held the lock shared has committed."""
    row: asyncpg.Record = await conn.fetchrow(
        "SELECT clock_timestamp() AS now,"
        " (SELECT min(received_at) FROM pending_claims WHERE received_at > clock_timestamp() - $2::interval"
        "   AND NOT EXISTS (SELECT 1 FROM application_status s WHERE s.application_id = pending_claims.application_id)"
        " ) AS claimed,"
        " (SELECT min(withdrawal_first_requested_at) FROM application_status"
        "   WHERE withdrawal_requested_at > clock_timestamp() - $2::interval AND status <> 'withdrawn') AS withdrawing,"
        " (SELECT min(least(created_at, (convert_from(value, 'UTF8')::jsonb ->> 'time')::timestamptz))"
        "   FROM outbox WHERE topic = $1) AS staged",
        topic,
        hold,
    )
    return row


async def status_exists(conn: Db, application_id: str) -> bool:
    """Whether the status view knows the application: its application.received was written."""
    return bool(await conn.fetchval("SELECT true FROM application_status WHERE application_id = $1", application_id))


async def upsert_status(conn: Db, status: StatusRow) -> None:
    await conn.execute(_INSERT_STATUS, *status.values())


async def advance_status(conn: Db, application_id: str, status: str, occurred_at: datetime) -> None:
    """Move forward only: a late event never overwrites a later state."""
    await conn.execute(
        "UPDATE application_status SET status = $2, status_rank = $3, updated_at = $4"
        " WHERE application_id = $1 AND status_rank <= $3",
        application_id,
        status,
        STATUS_RANK[status],
        occurred_at,
    )


async def project(
    conn: asyncpg.Connection,
    event_id: str,
    application_id: str,
    event_type: str,
    status: str | None,
    occurred_at: datetime,
    detail: dict[str, Any],
) -> None:
    """The timeline entry, and the furthest status of the application's entries (see migration 003)."""
    await conn.execute(
        "SELECT intake_project($1, $2, $3, $4, $5, $6, $7)",
        event_id,
        application_id,
        event_type,
        status,
        STATUS_RANK[status] if status else None,
        occurred_at,
        json.dumps(detail),
    )


def summary(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "application_id": row["application_id"],
        "status": row["status"],
        "category": row["category"],
        "requested_amount_cents": row["amount_cents"],
        "fiscal_years": list(row["fiscal_years"]),
        "received_at": row["received_at"],
        "updated_at": row["updated_at"],
    }


async def application_view(conn: Db, application_id: str, portal_id: str) -> dict[str, Any] | None:
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
        **summary(row),
        "timeline": [
            {
                "type": t["event_type"],
                "status": t["status"],
                "time": t["occurred_at"],
                "detail": json.loads(t["detail"]),
            }
            for t in timeline
        ],
    }


@dataclass(frozen=True)
class ListFilter:
    status: str | None = None
    category: str | None = None
    fiscal_year: int | None = None


async def list_applications(
    conn: Db, portal_id: str, where: ListFilter, after: tuple[datetime, str] | None, limit: int
) -> list[dict[str, Any]]:
    """The portal's applications in receipt order, after the cursor (keyset pagination)."""
    rows = await conn.fetch(
        "SELECT * FROM application_status WHERE portal_id = $1"
        " AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR category = $3)"
        " AND ($4::int IS NULL OR fiscal_years @> ARRAY[$4::int])"
        " AND ($5::timestamptz IS NULL OR (received_at, application_id) > ($5, $6))"
        " ORDER BY received_at, application_id LIMIT $7",
        portal_id,
        where.status,
        where.category,
        where.fiscal_year,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [summary(r) for r in rows]


# --- categories paused by a budget administrator ---------------------------------------------------


async def pause_category(conn: asyncpg.Connection, category: str, paused_at: datetime, event_id: str) -> None:
    await conn.execute(
        "INSERT INTO paused_categories (category, paused_at, event_id) VALUES ($1, $2, $3)"
        " ON CONFLICT (category) DO UPDATE SET paused_at = EXCLUDED.paused_at, event_id = EXCLUDED.event_id",
        category,
        paused_at,
        event_id,
    )


async def resume_category(conn: asyncpg.Connection, category: str) -> None:
    await conn.execute("DELETE FROM paused_categories WHERE category = $1", category)


async def category_paused(conn: Db, category: str) -> bool:
    """Whether a budget administrator has paused the category (the rules file's pauses are not here)."""
    return bool(await conn.fetchval("SELECT true FROM paused_categories WHERE category = $1", category))


# --- withdrawals ---------------------------------------------------------------------------------


# Behind the watermark's gate: a watermark computed before it lies before the time it takes now (a zero
# claim bound), and one computed after sees the withdrawal under way.
_CLAIM_WITHDRAWAL = (
    "WITH"  # noqa: S608 (the lock id is a constant; every value is a parameter)
    + GATE.format(lock=AdvisoryLock.INTAKE_WATERMARK.value).replace("$1::", "$5::")
    + " UPDATE application_status SET withdrawal_requested_at = gate.not_before,"
    " withdrawal_first_requested_at = COALESCE(withdrawal_first_requested_at, gate.not_before) FROM gate"
    " WHERE application_id = $1 AND portal_id = $2 AND status_rank < $3"
    " AND (withdrawal_requested_at IS NULL OR withdrawal_requested_at < now() - $4::interval)"
    " RETURNING status, withdrawal_first_requested_at"
)


async def claim_withdrawal(
    conn: Db, application_id: str, portal_id: str, final_rank: int, in_flight: timedelta
) -> asyncpg.Record | None:
    """Mark the withdrawal as being published, unless decided, withdrawn or already under way. The
    time of the first attempt is kept across releases: every retry publishes the same event."""
    return await conn.fetchrow(
        _CLAIM_WITHDRAWAL,
        application_id,
        portal_id,
        final_rank,
        in_flight,
        ZERO,
    )


async def withdrawal_state(conn: Db, application_id: str, portal_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT status, withdrawal_requested_at, withdrawal_first_requested_at FROM application_status"
        " WHERE application_id = $1 AND portal_id = $2",
        application_id,
        portal_id,
    )


async def release_withdrawal(conn: Db, application_id: str) -> None:
    await conn.execute(
        "UPDATE application_status SET withdrawal_requested_at = NULL WHERE application_id = $1", application_id
    )


# --- attachments (migration 007) -----------------------------------------------------------------


async def announcement(conn: Db, application_id: str, portal_id: str) -> asyncpg.Record | None:
    """The announced attachments and the status of one of the portal's applications."""
    return await conn.fetchrow(
        "SELECT attachments, status FROM application_status WHERE application_id = $1 AND portal_id = $2",
        application_id,
        portal_id,
    )


async def announcement_of(conn: Db, application_id: str) -> asyncpg.Record | None:
    """The announced attachments whichever portal's the application is (for the review service)."""
    return await conn.fetchrow("SELECT attachments FROM application_status WHERE application_id = $1", application_id)


async def arrived_digest(conn: Db, application_id: str, attachment: int) -> str | None:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT digest FROM attachment_arrivals WHERE application_id = $1 AND attachment = $2",
        application_id,
        attachment,
    )


async def lock_announcement(conn: asyncpg.Connection, application_id: str) -> None:
    """Serialises the arrivals of one application until the transaction ends: exactly one of them is the last."""
    await conn.execute("SELECT 1 FROM application_status WHERE application_id = $1 FOR UPDATE", application_id)


async def record_arrival(
    conn: asyncpg.Connection, application_id: str, attachment: int, digest: str, at: datetime
) -> tuple[datetime, bool]:
    """The time the attachment first arrived, and whether that is now: a repeated upload keeps the first."""
    inserted = await conn.fetchval(
        "INSERT INTO attachment_arrivals (application_id, attachment, digest, arrived_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT DO NOTHING RETURNING arrived_at",
        application_id,
        attachment,
        digest,
        at,
    )
    if inserted is not None:
        return inserted, True
    first = await conn.fetchval(
        "SELECT arrived_at FROM attachment_arrivals WHERE application_id = $1 AND attachment = $2",
        application_id,
        attachment,
    )
    return first, False


async def arrivals(conn: Db, application_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(  # type: ignore[no-any-return]
        "SELECT attachment, digest, arrived_at FROM attachment_arrivals WHERE application_id = $1 ORDER BY attachment",
        application_id,
    )


# --- documents requested by a caseworker (migration 009) ------------------------------------------


async def record_document_request(
    conn: Db, request_id: str, application_id: str, kinds: list[str], at: datetime
) -> None:
    await conn.execute(
        "INSERT INTO document_requests (request_id, application_id, kinds, requested_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT DO NOTHING",
        request_id,
        application_id,
        json.dumps(kinds),
        at,
    )


async def document_request(conn: Db, request_id: str, application_id: str, portal_id: str) -> asyncpg.Record | None:
    """The request with its application's status, if the application is the portal's."""
    return await conn.fetchrow(
        "SELECT r.kinds, r.answered_at, s.status FROM document_requests r"
        " JOIN application_status s USING (application_id)"
        " WHERE r.request_id = $1 AND r.application_id = $2 AND s.portal_id = $3",
        request_id,
        application_id,
        portal_id,
    )


async def record_requested_arrival(
    conn: asyncpg.Connection, request_id: str, document: int, announced: dict[str, Any], at: datetime
) -> tuple[datetime, bool]:
    """The time the requested document first arrived, and whether that is now (a repeat keeps the first)."""
    inserted = await conn.fetchval(
        "INSERT INTO requested_arrivals (request_id, document, file_name, media_type, size_bytes, digest, arrived_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING arrived_at",
        request_id,
        document,
        announced["file_name"],
        announced["media_type"],
        announced["size_bytes"],
        announced["digest"],
        at,
    )
    if inserted is not None:
        return inserted, True
    first = await conn.fetchrow(
        "SELECT digest, arrived_at FROM requested_arrivals WHERE request_id = $1 AND document = $2",
        request_id,
        document,
    )
    assert first is not None
    if first["digest"] != announced["digest"]:
        raise DifferentDocument
    return first["arrived_at"], False


class DifferentDocument(Exception):
    """Another document than the one that arrived first for this requested position."""


async def requested_arrivals(conn: Db, request_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(  # type: ignore[no-any-return]
        "SELECT document, file_name, media_type, size_bytes, digest, arrived_at FROM requested_arrivals"
        " WHERE request_id = $1 ORDER BY document",
        request_id,
    )


async def answer_document_request(conn: asyncpg.Connection, request_id: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE document_requests SET answered_at = $2 WHERE request_id = $1 AND answered_at IS NULL", request_id, at
    )


async def lock_document_request(conn: asyncpg.Connection, request_id: str) -> None:
    await conn.execute("SELECT 1 FROM document_requests WHERE request_id = $1 FOR UPDATE", request_id)


async def requested_digest(conn: Db, application_id: str, request_id: str, document: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT a.file_name, a.media_type, a.size_bytes, a.digest, r.kinds FROM requested_arrivals a"
        " JOIN document_requests r USING (request_id)"
        " WHERE a.request_id = $1 AND r.application_id = $2 AND a.document = $3",
        request_id,
        application_id,
        document,
    )
