"""Budget's event handlers: review results join the line (or are rejected), withdrawals leave it.

One function per event type, its dependencies as arguments; what budget reacts to is the
table at the bottom. The line itself is served by the line engine (``line.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from runtime.consumer import Handler
from runtime.outbox import Outgoing
from schemas.envelope import Envelope, Event, utc_now
from schemas.events import (
    ApplicationReviewed,
    ApplicationWithdrawn,
    Decision,
    FundsReleased,
    ReviewOutcome,
)
from services.budget import store
from services.budget.domain import QueuedApplication, final_decision
from services.budget.line import LineSettings, decide, emit, serve_line


async def on_reviewed(conn: asyncpg.Connection, envelope: Envelope, line: LineSettings) -> Sequence[Outgoing]:
    reviewed = envelope.payload(ApplicationReviewed)
    if reviewed.outcome is ReviewOutcome.NEEDS_MANUAL_REVIEW:
        return ()  # a caseworker decides first
    if reviewed.outcome is ReviewOutcome.INELIGIBLE:
        if await store.was_withdrawn(conn, reviewed.application_id):
            return ()  # withdrawn while in review: the withdrawal is its end, not a rejection
        rejected = final_decision(
            reviewed.application_id,
            Decision.REJECTED,
            reasons=[f.rule_id for f in reviewed.findings if not f.passed],
            rules_version=reviewed.rules_version,
            received_at=reviewed.received_at,
            decided_at=utc_now(),
        )
        return await decide(conn, rejected, envelope.id, line.signer)
    await store.lock_line(conn)
    entry = QueuedApplication(
        application_id=reviewed.application_id,
        ready_at=reviewed.ready_at,
        received_at=reviewed.received_at,
        category=reviewed.category,
        funding={f.fiscal_year: f.amount_cents for f in reviewed.funding},
    )
    # Joining the line decides nothing yet: the line is served once the arrival has settled.
    joined = await store.join_line(conn, entry, reviewed.rules_version, envelope.id)
    return await serve_line(conn, line, envelope) if joined and line.settle_seconds == 0 else ()


async def on_withdrawn(conn: asyncpg.Connection, envelope: Envelope, line: LineSettings) -> Sequence[Outgoing]:
    withdrawn = envelope.payload(ApplicationWithdrawn)
    app_id = withdrawn.application_id
    await store.lock_line(conn)
    entry = await store.line_entry(conn, app_id)
    if entry is None:
        await store.remember_withdrawal(conn, app_id)  # still in review: it must never join the line
        return ()
    if entry.status not in ("waiting", "reserved"):
        return ()  # already decided: a withdrawal comes too late to change it
    out = []
    for year, amount in await store.release(conn, app_id, f"portal:{withdrawn.portal_id}", envelope.id):
        released = FundsReleased(application_id=app_id, fiscal_year=year, amount_cents=amount, reason="withdrawn")
        out.append(emit(released, app_id, cause=envelope))
    await store.set_line_status(conn, app_id, "withdrawn")
    return [*out, *await serve_line(conn, line, envelope)]


LineHandler = Callable[[asyncpg.Connection, Envelope, LineSettings], Awaitable[Sequence[Outgoing]]]

# What budget reacts to: one grep answers it.
HANDLERS: dict[type[Event], LineHandler] = {
    ApplicationReviewed: on_reviewed,
    ApplicationWithdrawn: on_withdrawn,
}


def routes(line: LineSettings) -> dict[str, Handler]:
    """The consumer's routing table: each handler bound to the line's settings."""
    return {event_class.wire_type(): _bound(handler, line) for event_class, handler in HANDLERS.items()}


def _bound(handler: LineHandler, line: LineSettings) -> Handler:
    async def handle(conn: asyncpg.Connection, envelope: Envelope) -> Sequence[Outgoing]:
        return await handler(conn, envelope, line)

    return handle
