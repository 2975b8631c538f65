"""Caseworker actions as commands. Each locks the case, asks the pure casework rules, records the
action and returns the event that names the caseworker, all in the caller's transaction: the
``CommandRunner`` (``api.py``) stages that event in it, and its committed hook counts the metrics.

A decision that takes effect is an ``application.reviewed`` with ``reviewer`` = the caseworker,
the rules version of the case's automatic review (the findings the caseworker judged were made
under it), the automatic findings plus the caseworker's, and ``ready_at`` = the decision time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtime.outbox import Outgoing
from schemas.envelope import Envelope, Event, utc_now
from schemas.events import ApplicationReceived, DocumentsRequested, ReviewProposed, RuleFinding
from schemas.topics import REVIEWS
from services.review import casework, store
from services.review.casework import Action, Case, CaseStatus, Decision, Final, case_not_found
from services.review.domain import application_reviewed
from services.review.handlers import SOURCE

if TYPE_CHECKING:
    from datetime import datetime

    import asyncpg


@dataclass(frozen=True)
class Done:
    """What an action left behind: the case's new status and the event that records it."""

    application_id: str
    status: CaseStatus
    event_id: str


async def _locked(conn: asyncpg.Connection, application_id: str) -> tuple[asyncpg.Record, Case]:
    row = await store.case_row(conn, application_id, for_update=True)
    if row is None:
        raise case_not_found(application_id)
    return row, store.case_of(row)


def _wrap(event: Event, row: asyncpg.Record, actor: str, at: datetime) -> Envelope:
    cause = row["last_event_id"] if row["last_event_id"] != "unknown" else None
    return Envelope.wrap(event, source=SOURCE, subject=row["application_id"], causation_id=cause, actor=actor, time=at)


async def decide(conn: asyncpg.Connection, application_id: str, decision: Decision) -> tuple[Done, list[Outgoing]]:
    row, case = await _locked(conn, application_id)
    step = casework.decide(case, decision)
    now = utc_now()
    if isinstance(step, Final):
        return await _take_effect(conn, row, step, Action.DECIDED, now)
    proposed = ReviewProposed(
        application_id=application_id,
        proposed_by=step.caseworker,
        outcome=step.outcome,
        justification=step.justification,
        early_start_permitted=step.early_start_permitted,
        rules_version=row["rules_version"],
        amount_cents=row["amount_cents"],
    )
    envelope = _wrap(proposed, row, step.caseworker, now)
    await store.save_proposal(conn, application_id, step, envelope.id, now)
    await store.add_action(conn, application_id, Action.PROPOSED, step.caseworker, _detail(step), envelope.id, now)
    done = Done(application_id, CaseStatus.PROPOSED, envelope.id)
    return done, [Outgoing(REVIEWS, application_id, envelope)]


async def confirm(conn: asyncpg.Connection, application_id: str, caseworker: str) -> tuple[Done, list[Outgoing]]:
    row, case = await _locked(conn, application_id)
    return await _take_effect(conn, row, casework.confirm(case, caseworker), Action.CONFIRMED, utc_now())


async def request_documents(
    conn: asyncpg.Connection, application_id: str, caseworker: str, documents: list[str], note: str | None
) -> tuple[Done, list[Outgoing]]:
    row, case = await _locked(conn, application_id)
    message = casework.request_documents(case, documents, note)
    now = utc_now()
    requested = DocumentsRequested(
        application_id=application_id, requested_by=caseworker, documents=documents, message_de=message
    )
    envelope = _wrap(requested, row, caseworker, now)
    await store.save_waiting(conn, application_id, envelope.id, now)
    detail = {"documents": documents, "note": note}
    await store.add_action(conn, application_id, Action.DOCUMENTS_REQUESTED, caseworker, detail, envelope.id, now)
    done = Done(application_id, CaseStatus.WAITING_DOCUMENTS, envelope.id)
    return done, [Outgoing(REVIEWS, application_id, envelope)]


async def _take_effect(
    conn: asyncpg.Connection, row: asyncpg.Record, final: Final, action: Action, now: datetime
) -> tuple[Done, list[Outgoing]]:
    received = ApplicationReceived.model_validate_json(row["received_event"])
    automatic = [RuleFinding.model_validate(f) for f in json.loads(row["findings"])]
    findings = [*automatic, *casework.caseworker_findings(final)]
    reviewed = application_reviewed(
        received, final.decision.outcome, row["rules_version"], findings, final.reviewer, now
    )
    envelope = _wrap(reviewed, row, final.reviewer, now)
    await store.save_decision(conn, received.application_id, final.decision.outcome, final.reviewer, envelope.id, now)
    detail = _detail(final.decision) | {"confirmed_by": final.confirmed_by}
    await store.add_action(conn, received.application_id, action, final.reviewer, detail, envelope.id, now)
    done = Done(received.application_id, CaseStatus.DECIDED, envelope.id)
    return done, [Outgoing(REVIEWS, received.application_id, envelope)]


def _detail(decision: Decision) -> dict[str, object]:
    return {
        "outcome": decision.outcome.value,
        "justification": decision.justification,
        "proposed_by": decision.caseworker,
        "early_start_permitted": decision.early_start_permitted,
    }
