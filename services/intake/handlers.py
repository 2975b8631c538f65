"""The status projection: every application event moves the read model forward.

Routing is data: ``STATUS_ROUTES`` maps each event type to what it means for the status.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from runtime.consumer import Handler
from runtime.outbox import Outgoing
from schemas import events as ev
from schemas.envelope import Envelope, Event
from services.intake import store

# event -> (status or None for "no status change", public detail for the timeline)
Projection = Callable[[Any], tuple[str | None, dict[str, Any]]]

PROJECTIONS: dict[type[Event], Projection] = {
    ev.ApplicationReceived: lambda p: ("received", {"category_open": p.category_open}),
    ev.ApplicationReviewed: lambda p: (p.outcome.value, {"rules_version": p.rules_version}),
    ev.FundsReserved: lambda p: ("funds_reserved", {"fiscal_year": p.fiscal_year, "amount_cents": p.amount_cents}),
    ev.FundsCommitted: lambda p: (None, {"fiscal_year": p.fiscal_year, "amount_cents": p.amount_cents}),
    ev.ApplicationWaitlisted: lambda p: ("waitlisted", {"position": p.position, "reason": p.reason.value}),
    ev.FundsReleased: lambda p: (None, {"fiscal_year": p.fiscal_year, "reason": p.reason}),
    ev.ApplicationDecided: lambda p: (p.decision.value, {"amount_cents": p.amount_cents, "reasons": p.reasons}),
    ev.ApplicationWithdrawn: lambda p: ("withdrawn", {}),
    ev.NotificationDelivered: lambda p: (None, {"notice_type": p.notice_type, "channel": p.channel.value}),
}


def project(event_class: type[Event], projection: Projection) -> Handler:
    async def handle(conn: asyncpg.Connection, envelope: Envelope) -> Sequence[Outgoing]:
        payload = envelope.payload(event_class)
        application_id = getattr(payload, "application_id", None)
        if application_id is None:
            return ()
        if isinstance(payload, ev.ApplicationReceived):
            await store.upsert_status(
                conn,
                application_id=application_id,
                portal_id=payload.portal_id,
                applicant_ags=payload.application.applicant.ags,
                category=payload.application.project.category,
                amount_cents=payload.application.project.requested_amount_cents,
                received_at=payload.received_at,
            )
        status, detail = projection(payload)
        if status is not None:
            await store.advance_status(conn, application_id, status, envelope.time)
        await store.add_timeline_entry(
            conn, envelope.id, application_id, event_class.event_type, status or "unchanged", envelope.time, detail
        )
        return ()

    return handle


STATUS_ROUTES: dict[str, Handler] = {cls.wire_type(): project(cls, fn) for cls, fn in PROJECTIONS.items()}
