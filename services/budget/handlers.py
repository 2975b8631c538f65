"""Budget's event handlers: review results join the line (or are rejected), withdrawals leave it.

One function per event type, its dependencies as arguments; what budget reacts to is the
table at the bottom. The line itself is served by the line engine (``line.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import asyncpg

from runtime.outbox import Outgoing
from schemas.envelope import Envelope, Event, utc_now
from schemas.events import ApplicationReviewed, ApplicationWithdrawn, FundsReleased, ReviewOutcome
from services.budget import store
from services.budget.domain import AfterWithdrawal, Reject, after_review, after_withdrawal
from services.budget.line import LineSettings, decide, emit, serve_line

if TYPE_CHECKING:
    from runtime.consumer import Handler


async def on_reviewed(conn: asyncpg.Connection, envelope: Envelope, line: LineSettings) -> Sequence[Outgoing]:
    reviewed = envelope.payload(ApplicationReviewed)
    # Only a rejection needs the withdrawal read here; an eligible one is checked by the join itself,
    # under the line lock, so the hot path costs no extra query.
    ineligible = reviewed.outcome is ReviewOutcome.INELIGIBLE
    withdrawn = ineligible and await store.was_withdrawn(conn, reviewed.application_id)
    step = after_review(reviewed, withdrawn=withdrawn, now=utc_now())
    if isinstance(step, Reject):
        return await decide(conn, step.decided, envelope.id, line.signer)
    if step is None:
        return ()
    await store.lock_line(conn)
    # The join re-checks the withdrawal under the line lock: one may have committed since it was read.
    joined = await store.join_line(conn, step.application, reviewed.rules_version, envelope.id)
    return await serve_line(conn, line, envelope) if joined and line.settle_seconds == 0 else ()


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
