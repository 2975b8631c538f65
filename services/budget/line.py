"""The line engine: serve the line from the pots, commit what is due, make the one final decision.

The event handlers (``handlers.py``), the administration commands (``admin.py``) and the
background round (``lineserver.py``) all call into it. Every function here runs inside a
transaction that holds the line lock (taken by the caller), so two instances never plan over
the same money.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from runtime.outbox import Outgoing
from schemas.envelope import Envelope, Event, utc_now
from schemas.events import (
    ApplicationDecided,
    ApplicationWaitlisted,
    Decision,
    FundsCommitted,
    FundsEarmarked,
    FundsReleased,
    FundsReserved,
)
from schemas.topics import APPLICATIONS, topic_of
from services.budget import arrivals, store
from services.budget.domain import Policy, QueuedApplication, final_decision, plan_service

if TYPE_CHECKING:
    import asyncpg

    from runtime.signing import Signer

SOURCE = "/egov/budget"
BUDGET_ACTOR = "budget"


@dataclass(frozen=True)
class LineSettings:
    policy: Policy = "strict"
    commit_after_seconds: float = 0.0
    year_close_policy: str = "carry_over"
    # Signs every application.decided, so a municipality or auditor can verify it offline.
    signer: Signer | None = None
    # The applications topic's partitions: the frontier needs word from each.
    partitions: int = APPLICATIONS.partitions

    @property
    def commits_at_once(self) -> bool:
        """No withdrawal window: a reservation is committed and decided in the transaction that made it."""
        return self.commit_after_seconds == 0


def emit(
    event: Event,
    subject: str,
    *,
    cause: Envelope | None = None,
    cause_id: str | None = None,
    actor: str = BUDGET_ACTOR,
) -> Outgoing:
    envelope = Envelope.wrap(event, source=SOURCE, subject=subject, cause=cause, causation_id=cause_id, actor=actor)
    return Outgoing(topic_of(type(event)), subject, envelope)


async def serve_line(conn: asyncpg.Connection, line: LineSettings, cause: Envelope | None) -> list[Outgoing]:
    """Earmark or reserve for everyone the pots allow, in line order; tell newcomers where they stand.
    Only places the arrival frontier has passed are decided: an earlier one may still be on its way."""
    waiting = await store.waiting_line(conn, await arrivals.frontier(conn, line.partitions))
    plan = plan_service(
        [e.application for e in waiting],
        await store.available_by_year(conn),
        await store.paused_categories(conn),
        line.policy,
    )
    entries = {e.application.application_id: e for e in waiting}
    out: list[Outgoing] = []
    for app in plan.served:
        cause_id = entries[app.application_id].cause_event_id
        if app.in_review:
            out.extend(await _earmark(conn, app, cause, cause_id))
        else:
            out.extend(await _reserve(conn, app, cause, cause_id, provisional=not line.commits_at_once))
    for place in plan.waiting:
        entry = entries[place.application.application_id]
        if entry.told_position is None and not place.provisional:
            await store.tell_position(conn, entry.application.application_id, place.position)
            app = entry.application
            told = ApplicationWaitlisted(
                application_id=app.application_id,
                position=place.position,
                reason=place.reason,
                amount_cents=app.amount_cents,
                ready_at=app.place_at,
                place_at=app.place_at,
                in_review=app.in_review,
            )
            out.append(emit(told, app.application_id, cause=cause, cause_id=entry.cause_event_id))
    if line.commits_at_once:
        out.extend(await commit_due(conn, line))
    return out


async def _earmark(
    conn: asyncpg.Connection, app: QueuedApplication, cause: Envelope | None, receipt_id: str
) -> list[Outgoing]:
    """Its place came while review runs: set its amount aside, so no later place can take it."""
    cause_id = cause.id if cause else receipt_id
    out = []
    for year, amount in sorted(app.funding.items()):
        await store.earmark(conn, app.application_id, year, amount, app.place_at, cause_id)
        earmarked = FundsEarmarked(
            application_id=app.application_id, fiscal_year=year, amount_cents=amount, place_at=app.place_at
        )
        out.append(emit(earmarked, app.application_id, cause=cause, cause_id=receipt_id))
    await store.set_line_status(conn, app.application_id, "earmarked")
    return out


async def _reserve(
    conn: asyncpg.Connection, app: QueuedApplication, cause: Envelope | None, review_id: str, *, provisional: bool
) -> list[Outgoing]:
    """``provisional``: the grant notice follows later, so the reservation is news of its own (for notify)."""
    cause_id = cause.id if cause else review_id
    out = []
    for year, amount in sorted(app.funding.items()):
        await store.reserve(conn, app.application_id, year, amount, app.place_at, cause_id)
        out.append(emit(_reserved(app, year, amount, provisional), app.application_id, cause=cause, cause_id=review_id))
    await store.set_line_status(conn, app.application_id, "reserved")
    return out


def _reserved(
    app: QueuedApplication, year: int, amount: int, provisional: bool, *, from_earmark: bool = False
) -> FundsReserved:
    return FundsReserved(
        application_id=app.application_id,
        fiscal_year=year,
        amount_cents=amount,
        ready_at=app.place_at,
        place_at=app.place_at,
        provisional=provisional,
        from_earmark=from_earmark,
    )


async def reserve_earmark(
    conn: asyncpg.Connection, app: QueuedApplication, rules_version: str, line: LineSettings, review: Envelope
) -> list[Outgoing]:
    """Found eligible while earmarked: the money its place earned becomes its reservation."""
    out = []
    for year, amount in await store.reserve_earmarked(conn, app.application_id, review.id):
        reserved = _reserved(app, year, amount, not line.commits_at_once, from_earmark=True)
        out.append(emit(reserved, app.application_id, cause=review))
    await store.set_line_status(conn, app.application_id, "reserved")
    # Only now eligible: an earmark belongs to an application in review (a table constraint says so).
    await store.found_eligible(conn, app.application_id, app.funding, rules_version, review.id)
    if line.commits_at_once:
        out.extend(await commit_due(conn, line))
    return out


async def release(conn: asyncpg.Connection, app_id: str, reason: str, actor: str, cause: Envelope) -> list[Outgoing]:
    """Give back whatever the application holds (earmark or reservation), with why."""
    out = []
    for money in await store.release(conn, app_id, actor, cause.id):
        released = FundsReleased(
            application_id=app_id,
            fiscal_year=money.fiscal_year,
            amount_cents=money.amount_cents,
            reason=reason,
            earmarked=money.earmarked,
        )
        out.append(emit(released, app_id, cause=cause))
    return out


# For a year's close: commit what is reserved now, whatever may still be on its way.
EVERYTHING_SEEN = datetime.max.replace(tzinfo=UTC)


async def commit_due(
    conn: asyncpg.Connection, line: LineSettings, *, seen_until: datetime | None = None
) -> list[Outgoing]:
    """Issue the grant notice for reservations past their withdrawal window: commit and decide.

    Only once every partition of the applications topic has been read past the reservation
    (``seen_until``, by default the arrival frontier): a withdrawal the portal sent before budget
    reserved may still be on its way on another topic than the review, and it must win."""
    if seen_until is None:
        seen_until = await arrivals.frontier(conn, line.partitions)
    out: list[Outgoing] = []
    for entry in await store.due_for_commit(conn, line.commit_after_seconds, seen_until):
        app = entry.application
        for year, amount in sorted(app.funding.items()):
            await store.commit(conn, app.application_id, year, amount, entry.cause_event_id)
            committed = FundsCommitted(application_id=app.application_id, fiscal_year=year, amount_cents=amount)
            out.append(emit(committed, app.application_id, cause_id=entry.cause_event_id))
        await store.set_line_status(conn, app.application_id, "approved")
        approved = final_decision(
            app.application_id,
            Decision.APPROVED,
            funding=app.funding,
            rules_version=entry.rules_version,
            received_at=app.received_at,
            decided_at=utc_now(),
        )
        out.extend(await decide(conn, approved, entry.cause_event_id, line.signer))
    return out


async def decide(
    conn: asyncpg.Connection, decided: ApplicationDecided, cause_id: str, signer: Signer | None
) -> list[Outgoing]:
    """The one final decision per application; a second attempt emits nothing."""
    first = await conn.fetchval(
        "INSERT INTO decisions (application_id, decision, decided_at) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING RETURNING true",
        decided.application_id,
        decided.decision.value,
        decided.decided_at,
    )
    if not first:
        return []
    outgoing = emit(decided, decided.application_id, cause_id=cause_id)
    if signer is None:
        return [outgoing]
    return [Outgoing(outgoing.topic, outgoing.key, signer.sign(outgoing.envelope))]
