"""Review's handlers: one function per event type; routing is the dict at the bottom.

Each handler loads the facts it needs, asks a pure function what to do (``automatic_review``, tested
without PostgreSQL in ``tests/unit/test_review_handlers.py``) and writes what that returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtime.outbox import Outgoing
from schemas.envelope import Envelope, utc_now
from schemas.events import ApplicationCompleted, ApplicationReceived, DocumentsSupplied, ReviewOutcome, RuleFinding
from schemas.topics import REVIEWS
from services.review import store
from services.review.casework import EARLY_START_RULE, FOUR_EYES_RULE, needs_person_for
from services.review.domain import AUTOMATIC, ReviewCase, application_reviewed, review

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    import asyncpg

    from runtime.consumer import Handler
    from schemas.rules import Rules

SOURCE = "/egov/review"


@dataclass(frozen=True)
class CaseFlags:
    """Why a person must look: the amount needs four eyes, or an early start needs its own decision."""

    four_eyes: bool
    early_start: bool

    @classmethod
    def of(cls, findings: list[RuleFinding]) -> CaseFlags:
        return cls(needs_person_for(findings, FOUR_EYES_RULE), needs_person_for(findings, EARLY_START_RULE))


@dataclass(frozen=True)
class AutomaticReview:
    """What the automatic review decided: the result, the event that carries it, and a case if a person must look."""

    outcome: ReviewOutcome
    findings: list[RuleFinding]
    event: Envelope
    case: CaseFlags | None


def automatic_review(
    envelope: Envelope, received: ApplicationReceived, rules: Rules, competing: tuple[str, ...], reviewed_at: datetime
) -> AutomaticReview:
    """Run every rule and wrap the result as the event that names the received one as its cause."""
    outcome, findings = review(ReviewCase(received.application, received.received_at, competing), rules)
    result = application_reviewed(received, outcome, rules.version, findings, AUTOMATIC, reviewed_at)
    event = Envelope.wrap(
        result, source=SOURCE, subject=received.application_id, cause=envelope, actor=AUTOMATIC, time=reviewed_at
    )
    case = CaseFlags.of(findings) if outcome is ReviewOutcome.NEEDS_MANUAL_REVIEW else None
    return AutomaticReview(outcome, findings, event, case)


async def on_received(conn: asyncpg.Connection, envelope: Envelope, rules: Rules) -> Sequence[Outgoing]:
    """Review reviews complete applications only: one that announces attachments waits for them."""
    received = envelope.payload(ApplicationReceived)
    if received.application.attachments:
        await store.await_documents(conn, received)
        return ()
    return await review_complete(conn, envelope, received, rules)


async def on_completed(conn: asyncpg.Connection, envelope: Envelope, rules: Rules) -> Sequence[Outgoing]:
    """The last announced attachment arrived: the review runs now, and the place is that time."""
    completed = envelope.payload(ApplicationCompleted)
    waited = await store.take_awaiting(conn, completed.application_id)
    if waited is None:
        return ()  # a redelivery after the review, or nothing announced: no review waits on it
    received = waited.model_copy(update={"place_at": completed.completed_at})
    return await review_complete(conn, envelope, received, rules)


async def on_documents_supplied(conn: asyncpg.Connection, envelope: Envelope) -> Sequence[Outgoing]:
    """The documents a caseworker asked for arrived: the case lists them and goes back to the queue;
    the application's new place is their arrival time, which a decision from now on carries."""
    supplied = envelope.payload(DocumentsSupplied)
    await store.record_supplied(conn, supplied)
    await store.new_place(conn, supplied.application_id, supplied.supplied_at)
    await store.back_in_queue(conn, supplied.application_id, envelope.id, supplied.supplied_at)
    return ()


async def review_complete(
    conn: asyncpg.Connection, cause: Envelope, received: ApplicationReceived, rules: Rules
) -> Sequence[Outgoing]:
    """``cause`` is the event that made the application complete: its receipt or its completion."""
    competing = await store.competing_applications(conn, received)
    reviewed_at = utc_now()
    decided = automatic_review(cause, received, rules, competing, reviewed_at)
    if not await store.record_review(conn, received, decided.outcome, rules.version, decided.findings, reviewed_at):
        return ()  # reviewed before, under another event id: one review result per application
    if decided.case is not None:
        flags = decided.case
        await store.open_case(
            conn,
            received.application_id,
            four_eyes=flags.four_eyes,
            early_start=flags.early_start,
            event_id=decided.event.id,
            at=reviewed_at,
        )
    return [Outgoing(REVIEWS, received.application_id, decided.event)]


def routes(rules: Rules) -> dict[str, Handler]:
    async def received(conn: asyncpg.Connection, envelope: Envelope) -> Sequence[Outgoing]:
        return await on_received(conn, envelope, rules)

    async def completed(conn: asyncpg.Connection, envelope: Envelope) -> Sequence[Outgoing]:
        return await on_completed(conn, envelope, rules)

    return {
        ApplicationReceived.wire_type(): received,
        ApplicationCompleted.wire_type(): completed,
        DocumentsSupplied.wire_type(): on_documents_supplied,
    }
