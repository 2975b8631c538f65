"""Review's SQL: reviews, the caseworkers' cases and actions, caseworker credentials, replays."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from runtime.credentials import token_digest
from schemas.events import ApplicationReceived, DocumentsSupplied, ReviewOutcome, RuleFinding
from services.review.casework import Action, Case, CaseStatus, Decision

if TYPE_CHECKING:
    from datetime import datetime

Db: TypeAlias = asyncpg.Connection | asyncpg.Pool


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


async def await_documents(conn: asyncpg.Connection, received: ApplicationReceived) -> None:
    """Keep an incomplete application until its announced attachments have arrived."""
    await conn.execute(  # a receipt reissued after the review waits for nothing
        "INSERT INTO awaiting_documents (application_id, received_event, received_at) SELECT $1, $2, $3"
        " WHERE NOT EXISTS (SELECT 1 FROM reviews WHERE application_id = $1) ON CONFLICT DO NOTHING",
        received.application_id,
        received.model_dump_json(),
        received.received_at,
    )


async def take_awaiting(conn: asyncpg.Connection, application_id: str) -> ApplicationReceived | None:
    """The received application that waited for its documents, no longer waiting; None if it is not."""
    raw = await conn.fetchval(
        "DELETE FROM awaiting_documents WHERE application_id = $1 RETURNING received_event", application_id
    )
    return ApplicationReceived.model_validate_json(raw) if raw is not None else None


INSERT_REVIEW = (
    "INSERT INTO reviews (application_id, applicant_ags, category, fiscal_years, amount_cents, outcome,"
    " rules_version, findings, received_at, reviewed_at, received_event, open)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    " ON CONFLICT (application_id) DO NOTHING RETURNING true"
)


def review_row(
    received: ApplicationReceived,
    outcome: ReviewOutcome,
    rules_version: str,
    findings: list[RuleFinding],
    reviewed_at: datetime,
) -> tuple[object, ...]:
    """The parameters of ``INSERT_REVIEW`` (also usable with ``executemany`` for a batch)."""
    app = received.application
    return (
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


async def record_review(
    conn: asyncpg.Connection,
    received: ApplicationReceived,
    outcome: ReviewOutcome,
    rules_version: str,
    findings: list[RuleFinding],
    reviewed_at: datetime,
) -> bool:
    """False when the application was reviewed before: the primary key keeps one review result."""
    return bool(
        await conn.fetchval(INSERT_REVIEW, *review_row(received, outcome, rules_version, findings, reviewed_at))
    )


# --- the caseworker's cases ---------------------------------------------------


OPEN_CASE = (
    "INSERT INTO cases (application_id, status, four_eyes, early_start, last_event_id, updated_at)"
    " VALUES ($1, 'open', $2, $3, $4, $5)"
)


async def open_case(
    conn: asyncpg.Connection, application_id: str, *, four_eyes: bool, early_start: bool, event_id: str, at: datetime
) -> None:
    await conn.execute(OPEN_CASE, application_id, four_eyes, early_start, event_id, at)


_CASE_COLUMNS = (
    "c.application_id, c.status, c.four_eyes, c.early_start, c.proposal, c.proposed_by, c.decided_outcome,"
    " c.decided_by, c.decided_at, c.last_event_id, r.received_at, r.reviewed_at, r.rules_version, r.findings,"
    " r.outcome AS automatic_outcome, r.category, r.amount_cents, r.received_event"
)


async def case_row(conn: asyncpg.Connection, application_id: str, *, for_update: bool = False) -> asyncpg.Record | None:
    """The case with its automatic review; ``for_update`` holds it until the transaction ends."""
    lock = " FOR UPDATE OF c" if for_update else ""
    return await conn.fetchrow(
        f"SELECT {_CASE_COLUMNS} FROM cases c JOIN reviews r USING (application_id)"  # noqa: S608 - fixed text
        f" WHERE c.application_id = $1{lock}",
        application_id,
    )


def decision_from(raw: str | None) -> Decision | None:
    if raw is None:
        return None
    data = json.loads(raw)
    return Decision(ReviewOutcome(data["outcome"]), data["justification"], data["caseworker"], data["early_start"])


def decision_json(decision: Decision) -> str:
    return json.dumps(
        {
            "outcome": decision.outcome.value,
            "justification": decision.justification,
            "caseworker": decision.caseworker,
            "early_start": decision.early_start_permitted,
        }
    )


def case_of(row: asyncpg.Record) -> Case:
    return Case(
        application_id=row["application_id"],
        status=CaseStatus(row["status"]),
        four_eyes=row["four_eyes"],
        early_start=row["early_start"],
        proposal=decision_from(row["proposal"]) if row["status"] == CaseStatus.PROPOSED else None,
    )


async def queue(conn: Db, statuses: list[CaseStatus], limit: int) -> list[asyncpg.Record]:
    """Cases in the given states, oldest receipt first (ties by application id)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT c.application_id, c.status, c.four_eyes, c.early_start, c.proposed_by, r.received_at,"
        " r.reviewed_at, r.category, r.amount_cents, r.rules_version"
        " FROM cases c JOIN reviews r USING (application_id)"
        " WHERE c.status = ANY($1::text[]) ORDER BY r.received_at, c.application_id LIMIT $2",
        [s.value for s in statuses],
        limit,
    )
    return rows


async def save_proposal(
    conn: asyncpg.Connection, application_id: str, proposal: Decision, event_id: str, at: datetime
) -> None:
    await conn.execute(
        "UPDATE cases SET status = 'proposed', proposal = $2, proposed_by = $3, last_event_id = $4, updated_at = $5"
        " WHERE application_id = $1",
        application_id,
        decision_json(proposal),
        proposal.caseworker,
        event_id,
        at,
    )


async def save_decision(
    conn: asyncpg.Connection, application_id: str, outcome: ReviewOutcome, reviewer: str, event_id: str, at: datetime
) -> None:
    await conn.execute(
        "UPDATE cases SET status = 'decided', decided_outcome = $2, decided_by = $3, decided_at = $5,"
        " last_event_id = $4, updated_at = $5 WHERE application_id = $1",
        application_id,
        outcome.value,
        reviewer,
        event_id,
        at,
    )
    # An ineligible application no longer counts as an open application for the same measure.
    await conn.execute(
        "UPDATE reviews SET open = $2 WHERE application_id = $1", application_id, outcome is ReviewOutcome.ELIGIBLE
    )


async def save_waiting(conn: asyncpg.Connection, application_id: str, event_id: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE cases SET status = 'waiting_documents', proposal = NULL, proposed_by = NULL, last_event_id = $2,"
        " updated_at = $3 WHERE application_id = $1",
        application_id,
        event_id,
        at,
    )


async def add_action(
    conn: asyncpg.Connection,
    application_id: str,
    action: Action,
    caseworker: str,
    detail: dict[str, Any],
    event_id: str,
    at: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO case_actions (application_id, action, caseworker_id, detail, event_id, at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        application_id,
        action.value,
        caseworker,
        json.dumps(detail),
        event_id,
        at,
    )


async def actions(conn: Db, application_id: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT action, caseworker_id, detail, event_id, at FROM case_actions WHERE application_id = $1 ORDER BY id",
        application_id,
    )
    return rows


# --- caseworker credentials -----------------------------------------------------


async def caseworker_for_token(db: Db, token: str) -> str | None:
    found: str | None = await db.fetchval(
        "SELECT caseworker_id FROM caseworkers WHERE token_sha256 = $1 AND revoked_at IS NULL", token_digest(token)
    )
    return found


async def save_caseworker_token(db: Db, caseworker_id: str, token: str) -> None:
    await db.execute(
        "INSERT INTO caseworkers (caseworker_id, token_sha256) VALUES ($1, $2) ON CONFLICT (caseworker_id)"
        " DO UPDATE SET token_sha256 = EXCLUDED.token_sha256, issued_at = now(), revoked_at = NULL",
        caseworker_id,
        token_digest(token),
    )


async def revoke_caseworker(db: Db, caseworker_id: str) -> bool:
    result: str = await db.execute(
        "UPDATE caseworkers SET revoked_at = now() WHERE caseworker_id = $1 AND revoked_at IS NULL", caseworker_id
    )
    return result.endswith(" 1")


# --- "what if" replays ------------------------------------------------------------


async def reviews_received_between(db: Db, start: datetime, end: datetime) -> list[asyncpg.Record]:
    """Every reviewed application received in [start, end), in receipt order, with what was recorded."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT r.application_id, r.received_event, r.received_at, r.rules_version, r.outcome, r.findings,"
        " c.decided_outcome FROM reviews r LEFT JOIN cases c USING (application_id)"
        " WHERE r.received_at >= $1 AND r.received_at < $2 ORDER BY r.received_at, r.application_id",
        start,
        end,
    )
    return rows


async def open_measures_before(db: Db, start: datetime) -> list[asyncpg.Record]:
    """Applications received before the period that still count for the double-funding rule."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT application_id, applicant_ags, category, fiscal_years FROM reviews"
        " WHERE open AND outcome <> 'ineligible' AND received_at < $1",
        start,
    )
    return rows


# --- documents supplied on request (migration 005) -----------------------------------------------


async def record_supplied(conn: asyncpg.Connection, supplied: DocumentsSupplied) -> None:
    await conn.executemany(
        "INSERT INTO supplied_documents (application_id, request_id, document, kind, file_name, media_type,"
        " size_bytes, digest, supplied_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        [
            (
                supplied.application_id,
                supplied.request_id,
                n,
                d.kind,
                d.file_name,
                d.media_type,
                d.size_bytes,
                d.digest,
                supplied.supplied_at,
            )
            for n, d in enumerate(supplied.documents)
        ],
    )


async def new_place(conn: asyncpg.Connection, application_id: str, place_at: datetime) -> None:
    """The application is complete again: a caseworker's decision from now on carries this place."""
    await conn.execute(
        "UPDATE reviews SET received_event = jsonb_set(received_event::jsonb, '{place_at}', to_jsonb($2::text))"
        " WHERE application_id = $1",
        application_id,
        place_at.isoformat(),
    )


async def back_in_queue(conn: asyncpg.Connection, application_id: str, event_id: str, at: datetime) -> bool:
    """The documents a waiting case asked for arrived: it needs a person again."""
    done = await conn.fetchval(
        "UPDATE cases SET status = 'open', last_event_id = $2, updated_at = $3"
        " WHERE application_id = $1 AND status = 'waiting_documents' RETURNING true",
        application_id,
        event_id,
        at,
    )
    return bool(done)


async def supplied_documents(conn: Db, application_id: str) -> list[asyncpg.Record]:
    """In the order they arrived: the case lists them after the announced attachments."""
    return await conn.fetch(  # type: ignore[no-any-return]
        "SELECT request_id, document, kind, file_name, media_type, size_bytes, digest FROM supplied_documents"
        " WHERE application_id = $1 ORDER BY supplied_at, request_id, document",
        application_id,
    )
