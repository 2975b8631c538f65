"""Budget's handlers: review results join the line, money and administrators serve it.

Every handler runs inside the consumer's (or the admin route's) transaction,
holding the line lock, so two instances never plan over the same money.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from runtime.consumer import Handler
from runtime.outbox import Outgoing
from schemas.application import FundingYear
from schemas.envelope import Envelope, Event, utc_now
from schemas.events import (
    ApplicationDecided,
    ApplicationReviewed,
    ApplicationWaitlisted,
    Decision,
    FiscalYearOpened,
    FundsCommitted,
    FundsReserved,
    ReviewOutcome,
)
from schemas.topics import BUDGET_ADMIN, topic_of
from services.budget import store
from services.budget.domain import Policy, QueuedApplication, plan_service

SOURCE = "/egov/budget"
BUDGET_ACTOR = "budget"


def emit(event: Event, subject: str, cause: Envelope | None, actor: str = BUDGET_ACTOR) -> Outgoing:
    topic = topic_of(type(event))
    return Outgoing(topic, subject, Envelope.wrap(event, source=SOURCE, subject=subject, cause=cause, actor=actor))


async def serve_line(conn: asyncpg.Connection, policy: Policy, cause: Envelope | None) -> list[Outgoing]:
    """Reserve for everyone the line and the pots allow, in order; tell newcomers their position."""
    line = await store.waiting_line(conn)
    plan = plan_service(
        [entry for entry, *_ in line], await store.available_by_year(conn), await store.paused_categories(conn), policy
    )
    details = {entry.application_id: (told, rules_version) for entry, told, rules_version, _ in line}
    out: list[Outgoing] = []
    for app in plan.served:
        out.extend(await _approve(conn, app, details[app.application_id][1], cause))
    for waiting in plan.waiting:
        app = waiting.application
        if details[app.application_id][0] is None:
            await store.tell_position(conn, app.application_id, waiting.position)
            out.append(
                emit(
                    ApplicationWaitlisted(
                        application_id=app.application_id,
                        position=waiting.position,
                        reason=waiting.reason,
                        amount_cents=app.amount_cents,
                        ready_at=app.ready_at,
                    ),
                    app.application_id,
                    cause,
                )
            )
    return out


async def _approve(
    conn: asyncpg.Connection, app: QueuedApplication, rules_version: str, cause: Envelope | None
) -> list[Outgoing]:
    cause_id = cause.id if cause else None
    out: list[Outgoing] = []
    for year, amount in sorted(app.funding.items()):
        await store.reserve(conn, app.application_id, year, amount, app.ready_at, cause_id or "")
        out.append(
            emit(
                FundsReserved(
                    application_id=app.application_id, fiscal_year=year, amount_cents=amount, ready_at=app.ready_at
                ),
                app.application_id,
                cause,
            )
        )
    # The grant decision is final once every year is reserved: commit and decide in the same transaction.
    for year, amount in sorted(app.funding.items()):
        await store.commit(conn, app.application_id, year, amount, cause_id or "")
        out.append(
            emit(
                FundsCommitted(application_id=app.application_id, fiscal_year=year, amount_cents=amount),
                app.application_id,
                cause,
            )
        )
    await store.leave_line(conn, app.application_id, "served")
    decided = ApplicationDecided(
        application_id=app.application_id,
        decision=Decision.APPROVED,
        amount_cents=app.amount_cents,
        funding=[FundingYear(fiscal_year=y, amount_cents=c) for y, c in sorted(app.funding.items())],
        reasons=[],
        rules_version=rules_version,
        received_at=app.received_at,
        decided_at=utc_now(),
    )
    out.append(emit(decided, app.application_id, cause))
    return out


async def on_reviewed(conn: asyncpg.Connection, envelope: Envelope, policy: Policy) -> Sequence[Outgoing]:
    reviewed = envelope.payload(ApplicationReviewed)
    if reviewed.outcome is ReviewOutcome.NEEDS_MANUAL_REVIEW:
        return ()  # a caseworker decides first
    if reviewed.outcome is ReviewOutcome.INELIGIBLE:
        rejected = ApplicationDecided(
            application_id=reviewed.application_id,
            decision=Decision.REJECTED,
            amount_cents=0,
            funding=[],
            reasons=[f.rule_id for f in reviewed.findings if not f.passed],
            rules_version=reviewed.rules_version,
            received_at=reviewed.received_at,
            decided_at=utc_now(),
        )
        return [emit(rejected, reviewed.application_id, envelope)]
    await store.lock_line(conn)
    entry = QueuedApplication(
        application_id=reviewed.application_id,
        ready_at=reviewed.ready_at,
        received_at=reviewed.received_at,
        category=reviewed.category,
        funding={f.fiscal_year: f.amount_cents for f in reviewed.funding},
    )
    if not await store.join_line(conn, entry, reviewed.rules_version, envelope.id):
        return ()  # already in line: a second review result for the same application changes nothing
    return await serve_line(conn, policy, envelope)


async def open_fiscal_year(
    conn: asyncpg.Connection, year: int, pot_cents: int, actor: str, policy: Policy
) -> list[Outgoing] | None:
    """None when the year is already open."""
    await store.lock_line(conn)
    opened = FiscalYearOpened(fiscal_year=year, pot_cents=pot_cents)
    envelope = Envelope.wrap(opened, source=SOURCE, subject=str(year), actor=actor)
    if not await store.open_pot(conn, year, pot_cents, actor, envelope.id):
        return None
    return [Outgoing(BUDGET_ADMIN, str(year), envelope), *await serve_line(conn, policy, envelope)]


def routes(policy: Policy) -> dict[str, Handler]:
    async def reviewed(conn: asyncpg.Connection, envelope: Envelope) -> Sequence[Outgoing]:
        return await on_reviewed(conn, envelope, policy)

    return {ApplicationReviewed.wire_type(): reviewed}
