"""Every event of one application across all topics, in order, with who caused it and why.

Personal data stays out: the contact block of a receipt is replaced by a marker.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from audit.log import application_of, euros, in_order, short_type, topic_name, typed
from schemas import events as ev
from schemas.topics import EVENT_TYPES

if TYPE_CHECKING:
    from collections.abc import Callable

    from schemas.envelope import Envelope, Event

PERSONAL_DATA_OMITTED = "<personal data omitted>"


def concerns(envelope: Envelope, application_id: str) -> bool:
    return application_id in (application_of(envelope), envelope.subject, envelope.correlationid)


def timeline(envelopes: list[Envelope], application_id: str) -> list[dict[str, Any]]:
    history = in_order(envelopes)
    types_by_id = {e.id: short_type(e) for e in history}
    return [row(e, types_by_id) for e in history if concerns(e, application_id)]


def row(envelope: Envelope, types_by_id: dict[str, str]) -> dict[str, Any]:
    cause = envelope.causationid
    return {
        "time": envelope.time.isoformat(),
        "topic": topic_name(envelope),
        "type": short_type(envelope),
        "source": envelope.source,
        "actor": envelope.actor,
        "id": envelope.id,
        "causationid": cause,
        "cause_type": types_by_id.get(cause, "missing from the log") if cause else None,
        "summary": summary(envelope),
        "data": without_personal_data(envelope),
    }


def without_personal_data(envelope: Envelope) -> dict[str, Any]:
    data = copy.deepcopy(envelope.data)
    application = data.get("application")
    if envelope.is_a(ev.ApplicationReceived) and isinstance(application, dict) and "contact" in application:
        application["contact"] = PERSONAL_DATA_OMITTED
    return data


def _funds(e: ev.FundsReserved | ev.FundsCommitted | ev.FundsReleased) -> str:
    return f"{e.fiscal_year}: {euros(e.amount_cents)}"


SUMMARIES: dict[type[Event], Callable[[Any], str]] = {
    ev.ApplicationReceived: lambda e: (
        f"from {e.portal_id}, {e.application.project.category}, "
        f"{euros(e.application.project.requested_amount_cents)} requested"
    ),
    ev.ApplicationRejected: lambda e: f"{len(e.errors)} error(s) at intake",
    ev.ApplicationWithdrawn: lambda e: f"withdrawn by {e.portal_id}",
    ev.ApplicationReviewed: lambda e: f"{e.outcome.value} by {e.reviewer} (rules {e.rules_version})",
    ev.DocumentsRequested: lambda e: f"documents requested: {', '.join(e.documents)}",
    ev.ReviewProposed: lambda e: f"{e.outcome.value} proposed by {e.proposed_by}",
    ev.FundsReserved: _funds,
    ev.FundsCommitted: _funds,
    ev.FundsReleased: lambda e: f"{_funds(e)} ({e.reason})",
    ev.ApplicationWaitlisted: lambda e: f"position {e.position} ({e.reason.value})",
    ev.ApplicationDecided: lambda e: (
        f"{e.decision.value} {euros(e.amount_cents)}" + (f" ({', '.join(e.reasons)})" if e.reasons else "")
    ),
    ev.NotificationDelivered: lambda e: f"{e.notice_type} via {e.channel.value}",
    ev.NotificationFailed: lambda e: f"{e.notice_type} via {e.channel.value} failed after {e.attempts} attempt(s)",
}


def summary(envelope: Envelope) -> str:
    if envelope.type not in EVENT_TYPES:
        return "unknown event type"
    event = typed(envelope)
    if event is None:
        return "payload does not fit its schema"
    describe = SUMMARIES.get(type(event))
    return describe(event) if describe else ""
