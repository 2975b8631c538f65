"""Review's handlers: one function per event type; routing is the dict at the bottom."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from runtime.consumer import Handler
from runtime.outbox import Outgoing
from schemas.envelope import Envelope, utc_now
from schemas.events import ApplicationReceived, ApplicationReviewed
from schemas.rules import Rules
from schemas.topics import REVIEWS
from services.review import store
from services.review.domain import ReviewCase, review

SOURCE = "/egov/review"
AUTOMATIC = "automatic"


async def on_received(conn: asyncpg.Connection, envelope: Envelope, rules: Rules) -> Sequence[Outgoing]:
    received = envelope.payload(ApplicationReceived)
    if await store.already_reviewed(conn, received.application_id):
        return ()
    case = ReviewCase(received.application, received.received_at, await store.competing_applications(conn, received))
    outcome, findings = review(case, rules)
    reviewed_at = utc_now()
    await store.record_review(conn, received, outcome, rules.version, findings, reviewed_at)
    project = received.application.project
    result = ApplicationReviewed(
        application_id=received.application_id,
        outcome=outcome,
        rules_version=rules.version,
        findings=findings,
        reviewer=AUTOMATIC,
        category=project.category,
        amount_cents=project.requested_amount_cents,
        funding=project.funding,
        received_at=received.received_at,
        ready_at=reviewed_at,
    )
    envelope_out = Envelope.wrap(
        result, source=SOURCE, subject=received.application_id, cause=envelope, actor=AUTOMATIC, time=reviewed_at
    )
    return [Outgoing(REVIEWS, received.application_id, envelope_out)]


def routes(rules: Rules) -> dict[str, Handler]:
    async def received(conn: asyncpg.Connection, envelope: Envelope) -> Sequence[Outgoing]:
        return await on_received(conn, envelope, rules)

    return {ApplicationReceived.wire_type(): received}
