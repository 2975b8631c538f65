"""Budget's event handlers: receipts take their place in line, reviews settle what the place holds,
withdrawals leave it.

One function per event type, its dependencies as arguments; what budget reacts to is the
table at the bottom. The line itself is served by the line engine (``line.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import asyncpg

from runtime.consumer import Idempotent, wire_of
from runtime.outbox import Outgoing
from schemas.envelope import Envelope, Event, utc_now
from schemas.events import (
    ApplicationCompleted,
    ApplicationReceived,
    ApplicationReviewed,
    ApplicationWithdrawn,
    DocumentsSupplied,
    IntakeWatermark,
    ReviewOutcome,
)
from schemas.topics import APPLICATIONS
from services.budget import arrivals, store
from services.budget.domain import AfterWithdrawal, ReviewStep, after_withdrawal, queued, rejection, review_step
from services.budget.line import LineSettings, decide, release, reserve_earmark, serve_line

if TYPE_CHECKING:
    from datetime import datetime

    from runtime.consumer import Handler


async def on_received(conn: asyncpg.Connection, envelope: Envelope, line: LineSettings) -> Sequence[Outgoing]:
    """The application takes its place in line at once, in review; the line server decides the place
    (earmark or waitlist) as soon as the arrival frontier (intake's watermarks) has passed it."""
    received = envelope.payload(ApplicationReceived)
    app = queued(received, in_review=True)
    await _arrived(conn, envelope, app.place_at)
    await store.lock_line(conn)
    # One that announces attachments is complete, and has its place, only once they all arrived.
    await store.join_line(conn, app, None, envelope.id, complete=not received.application.attachments)
    return ()


async def on_completed(conn: asyncpg.Connection, envelope: Envelope, line: LineSettings) -> Sequence[Outgoing]:
    """The last announced attachment arrived: that time is the application's place, decided like any
    other once the frontier has passed it."""
    completed = envelope.payload(ApplicationCompleted)
    await _arrived(conn, envelope, completed.completed_at)
    await store.lock_line(conn)
    if not await store.complete_place(conn, completed.application_id, completed.completed_at):
        return ()
    return await serve_line(conn, line, envelope)


async def on_documents_supplied(conn: asyncpg.Connection, envelope: Envelope, line: LineSettings) -> Sequence[Outgoing]:
    """The documents a caseworker asked for arrived: complete again, and that time is the new place.
    An earmark held for the old place goes back to the line, which then serves the new place in turn."""
    supplied = envelope.payload(DocumentsSupplied)
    app_id = supplied.application_id
    await _arrived(conn, envelope, supplied.supplied_at)
    await store.lock_line(conn)
    entry = await store.line_entry(conn, app_id)
    if entry is None or entry.status not in ("waiting", "earmarked"):
        return ()  # decided, withdrawn or holding a reservation: a new place changes nothing
    out = await release(conn, app_id, "documents_supplied", "budget", envelope)
    await store.move_place(conn, app_id, supplied.supplied_at)
    return [*out, *await serve_line(conn, line, envelope)]


async def _arrived(conn: asyncpg.Connection, envelope: Envelope, place_at: datetime) -> None:
    """A place time reached budget: counted as late if a watermark on its partition had passed it."""
    wire = wire_of(envelope)
    if wire is not None and wire.partition is not None:
        await arrivals.record_arrival(conn, wire.partition, place_at)


async def on_watermark(conn: asyncpg.Connection, envelope: Envelope, line: LineSettings) -> Sequence[Outgoing]:
    """Intake's promise for the partition the record is on: every earlier place precedes it there, so
    it is in line now. The record's own partition counts, whatever the payload names."""
    mark = envelope.payload(IntakeWatermark)
    wire = wire_of(envelope)
    if wire is not None and wire.topic == APPLICATIONS.name and wire.partition is not None:
        await arrivals.record_watermark(conn, wire.partition, mark.watermark)
    return ()


async def on_reviewed(conn: asyncpg.Connection, envelope: Envelope, line: LineSettings) -> Sequence[Outgoing]:
    reviewed = envelope.payload(ApplicationReviewed)
    app_id = reviewed.application_id
    await store.lock_line(conn)
    entry = await store.line_entry(conn, app_id)
    completed_now = entry is not None and entry.status == "incomplete"
    if completed_now:
        # The review of a complete application overtook its application.completed: it carries the place.
        await store.complete_place(conn, app_id, reviewed.place_at or reviewed.received_at)
        entry = await store.line_entry(conn, app_id)
    funding = {f.fiscal_year: f.amount_cents for f in reviewed.funding}
    step = review_step(
        reviewed.outcome,
        status=entry.status if entry else None,
        review=entry.review if entry else None,
        same_funding=entry is not None and dict(entry.application.funding) == funding,
        withdrawn=entry is None and await store.was_withdrawn(conn, app_id),
    )
    match step:
        case ReviewStep.NOTHING:
            return await serve_line(conn, line, envelope) if completed_now else ()
        case ReviewStep.JOIN:
            # Its receipt is still on its way to budget: the review carries the same place.
            manual = reviewed.outcome is ReviewOutcome.NEEDS_MANUAL_REVIEW
            await store.join_line(conn, queued(reviewed, in_review=manual), reviewed.rules_version, envelope.id)
            if not manual:
                await store.found_eligible(conn, app_id, funding, reviewed.rules_version, envelope.id)
            return await serve_line(conn, line, envelope)
        case ReviewStep.REJECT:
            return await _reject(conn, reviewed, envelope, line, in_line=entry is not None)
        case ReviewStep.RESERVE_EARMARK:
            assert entry is not None
            return await reserve_earmark(conn, entry.application, reviewed.rules_version, line, envelope)
        case ReviewStep.REPLAN:
            out = await release(conn, app_id, "amount_changed", "budget", envelope)
            await store.set_line_status(conn, app_id, "waiting")
            await store.move_funding(conn, app_id, funding)
            await store.found_eligible(conn, app_id, funding, reviewed.rules_version, envelope.id)
            return [*out, *await serve_line(conn, line, envelope)]
        case ReviewStep.BECOME_ELIGIBLE:
            await store.found_eligible(conn, app_id, funding, reviewed.rules_version, envelope.id)
            return await serve_line(conn, line, envelope)


async def _reject(
    conn: asyncpg.Connection, reviewed: ApplicationReviewed, envelope: Envelope, line: LineSettings, *, in_line: bool
) -> list[Outgoing]:
    """Ineligible: whatever its place held goes back to the line, which is served again."""
    app_id = reviewed.application_id
    if not in_line:
        await store.join_line(conn, queued(reviewed, in_review=False), reviewed.rules_version, envelope.id)
    out = await release(conn, app_id, "ineligible", "budget", envelope)
    await store.set_line_status(conn, app_id, "rejected")
    out.extend(await decide(conn, rejection(reviewed, now=utc_now()), envelope.id, line.signer))
    return [*out, *await serve_line(conn, line, envelope)] if in_line else out


async def on_withdrawn(conn: asyncpg.Connection, envelope: Envelope, line: LineSettings) -> Sequence[Outgoing]:
    withdrawn = envelope.payload(ApplicationWithdrawn)
    app_id = withdrawn.application_id
    await store.lock_line(conn)
    entry = await store.line_entry(conn, app_id)
    step = after_withdrawal(entry.status if entry else None)
    if step is AfterWithdrawal.KEEP_OUT:
        await store.remember_withdrawal(conn, app_id)
    if step is not AfterWithdrawal.LEAVE_LINE:
        return ()
    out = await release(conn, app_id, "withdrawn", f"portal:{withdrawn.portal_id}", envelope)
    await store.set_line_status(conn, app_id, "withdrawn")
    return [*out, *await serve_line(conn, line, envelope)]


LineHandler = Callable[[asyncpg.Connection, Envelope, LineSettings], Awaitable[Sequence[Outgoing]]]

# What budget reacts to: one grep answers it.
HANDLERS: dict[type[Event], LineHandler] = {
    ApplicationReceived: on_received,
    ApplicationCompleted: on_completed,
    DocumentsSupplied: on_documents_supplied,
    ApplicationReviewed: on_reviewed,
    ApplicationWithdrawn: on_withdrawn,
    IntakeWatermark: on_watermark,
}
# Moving a frontier with GREATEST is the same however often it is done: no inbox row for these.
IDEMPOTENT: frozenset[type[Event]] = frozenset({IntakeWatermark})


def routes(line: LineSettings) -> dict[str, Handler]:
    """The consumer's routing table: each handler bound to the line's settings."""
    return {
        event_class.wire_type(): Idempotent(_bound(handler, line))
        if event_class in IDEMPOTENT
        else _bound(handler, line)
        for event_class, handler in HANDLERS.items()
    }


def _bound(handler: LineHandler, line: LineSettings) -> Handler:
    async def handle(conn: asyncpg.Connection, envelope: Envelope) -> Sequence[Outgoing]:
        return await handler(conn, envelope, line)

    return handle
