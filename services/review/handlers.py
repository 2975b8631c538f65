"""Review's handlers: one function per event type; routing is the dict at the bottom."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from runtime.consumer import Handler
from runtime.outbox import Outgoing
from schemas.envelope import Envelope, utc_now
from schemas.events import ApplicationReceived, ReviewOutcome, RuleFinding
from schemas.rules import Rules
from schemas.topics import REVIEWS
from services.review import store
from services.review.casework import EARLY_START_RULE, FOUR_EYES_RULE, needs_person_for
from services.review.domain import AUTOMATIC, ReviewCase, application_reviewed, review

SOURCE = "/egov/review"


def automatic_review(
    envelope: Envelope, received: ApplicationReceived, rules: Rules, competing: tuple[str, ...], reviewed_at: datetime
) -> tuple[ReviewOutcome, list[RuleFinding], Envelope]:
    """Run every rule and wrap the result as the event that names the received one as its cause."""
    outcome, findings = review(ReviewCase(received.application, received.received_at, competing), rules)
    result = application_reviewed(received, outcome, rules.version, findings, AUTOMATIC, reviewed_at)
    wrapped = Envelope.wrap(
        result, source=SOURCE, subject=received.application_id, cause=envelope, actor=AUTOMATIC, time=reviewed_at
    )
    return outcome, findings, wrapped


def case_flags(findings: list[RuleFinding]) -> dict[str, bool]:
    """Why a person must look: the amount needs four eyes, or an early start needs its own decision."""
    return {
        "four_eyes": needs_person_for(findings, FOUR_EYES_RULE),
        "early_start": needs_person_for(findings, EARLY_START_RULE),
    }


async def on_received(conn: asyncpg.Connection, envelope: Envelope, rules: Rules) -> Sequence[Outgoing]:
    received = envelope.payload(ApplicationReceived)
    competing = await store.competing_applications(conn, received)
    reviewed_at = utc_now()
    outcome, findings, result = automatic_review(envelope, received, rules, competing, reviewed_at)
    if not await store.record_review(conn, received, outcome, rules.version, findings, reviewed_at):
        return ()  # reviewed before, under another event id: one review result per application
    if outcome is ReviewOutcome.NEEDS_MANUAL_REVIEW:
        await store.open_case(conn, received.application_id, **case_flags(findings), event_id=result.id, at=reviewed_at)
    return [Outgoing(REVIEWS, received.application_id, result)]


def routes(rules: Rules) -> dict[str, Handler]:
    async def received(conn: asyncpg.Connection, envelope: Envelope) -> Sequence[Outgoing]:
        return await on_received(conn, envelope, rules)

    return {ApplicationReceived.wire_type(): received}
