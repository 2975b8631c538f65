"""Intake's event handlers: the Kafka ingress of submissions, and the status projection.

Both run in the transactional consumer (inbox, state change and outbox in one transaction).
Routing is data: ``ingress_routes`` and ``STATUS_ROUTES`` say what intake reacts to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from runtime import strict_json
from runtime.consumer import wire_of
from runtime.outbox import Outgoing
from runtime.record_signatures import Verdict
from schemas import events as ev
from schemas.envelope import Envelope, Event
from schemas.events import ProblemItem
from schemas.topics import APPLICATIONS
from services.intake import store
from services.intake.admission import FullYear, received
from services.intake.domain import application_id, body_digest, duplicate_problem, validate_application
from services.intake.ingress import Duplicate, Refuse, SubmissionFacts, Unproven, decide
from services.intake.policy import fiscal_years
from services.intake.provenance import authenticate, claimed_portal
from services.intake.submission import SOURCE

if TYPE_CHECKING:
    import asyncpg

    from runtime.consumer import Handler
    from schemas.application import FundingApplication
    from schemas.rules import Rules

# --- the Kafka ingress: submissions published by portals ----------------------------------------

UNAUTHENTICATED = ProblemItem(
    code="portal.unauthenticated",
    pointer="/portal_id",
    detail="the record carries no valid, current signature by a signing key of the portal it names",
)
MAX_ID_LENGTH = 200


def rejected(
    cause: Envelope, portal_id: str, submission_id: str, errors: list[ProblemItem], actor: str | None
) -> list[Outgoing]:
    """Every error at once, keyed by the submission (there is no application)."""
    event = ev.ApplicationRejected(portal_id=portal_id, submission_id=submission_id, errors=errors)
    envelope = Envelope.wrap(event, source=SOURCE, subject=submission_id, cause=cause, actor=actor)
    return [Outgoing(APPLICATIONS, submission_id, envelope)]


def refused(cause: Envelope, command: ev.SubmitApplication, errors: Sequence[ProblemItem]) -> list[Outgoing]:
    return rejected(cause, command.portal_id, command.submission_id, list(errors), f"portal:{command.portal_id}")


def unauthenticated(cause: Envelope) -> list[Outgoing]:
    """The answer to a record no portal proved: it names whom it claimed to be, and no one is its actor."""
    submission_id = cause.data.get("submission_id")
    if not isinstance(submission_id, str) or not submission_id:
        submission_id = cause.subject
    portal_id = claimed_portal(cause) or ""
    return rejected(cause, portal_id[:MAX_ID_LENGTH], submission_id[:MAX_ID_LENGTH], [UNAUTHENTICATED], None)


async def on_submission(
    conn: asyncpg.Connection, envelope: Envelope, rules: Rules, quota: store.Quota, tolerance_seconds: float
) -> Sequence[Outgoing]:
    facts = await submission_facts(conn, envelope, rules, quota, tolerance_seconds)
    decision = decide(facts)
    if isinstance(decision, Unproven) or facts is None:
        return unauthenticated(envelope)
    if isinstance(decision, Duplicate):
        return ()
    if isinstance(decision, Refuse):
        return refused(envelope, facts.command, decision.problems)
    return await receive(conn, envelope, facts, decision.application, rules)


async def submission_facts(
    conn: asyncpg.Connection, envelope: Envelope, rules: Rules, quota: store.Quota, tolerance_seconds: float
) -> SubmissionFacts | None:
    """What ``ingress.decide`` needs; None when the record is not proven to come from its portal."""
    # First, before any claim in the payload is read or acted on: did the portal it names write it?
    if await authenticate(conn, envelope, tolerance_seconds) is not Verdict.VALID:
        return None
    command = envelope.payload(ev.SubmitApplication)
    portal = await store.portal_by_id(conn, command.portal_id)
    if portal is None or command.portal_id != claimed_portal(envelope):
        return None  # the keys came with the portal; this only guards against drift
    prefixes = portal["ags_prefixes"]
    scope = tuple(prefixes) if prefixes is not None else None
    digest = body_digest(command.application)
    earlier = await store.submission(conn, command.portal_id, command.submission_id)
    if earlier is not None:  # seen before: the decision compares the bodies and looks at nothing else
        return SubmissionFacts(command, scope, digest, bytes(earlier["body_sha256"]))
    parsed = repeated_member(envelope) or validate_application(command.application, rules)
    return SubmissionFacts(command, scope, digest, None, parsed, await quota_fact(conn, parsed, quota))


def repeated_member(envelope: Envelope) -> list[ProblemItem] | None:
    """A member named twice anywhere in the record: the decoded application is then only the decoder's
    guess (the last one), so it is refused as over HTTP. The pointer is within the application, or
    within the submission (as ``/portal_id``) when the repeat is outside it, else within the record."""
    wire = wire_of(envelope)
    if wire is None:
        return None
    try:
        strict_json.loads(wire.value)
    except strict_json.DuplicateMember as member:
        for inside in ("/data/application", "/data"):
            if member.pointer.startswith(inside + "/"):
                member.pointer = member.pointer.removeprefix(inside)
                break
        return [duplicate_problem(member)]
    except ValueError:
        return None  # it decoded, so it is JSON; nothing more to say here
    return None


async def quota_fact(
    conn: asyncpg.Connection, parsed: FundingApplication | list[ProblemItem], quota: store.Quota
) -> FullYear | None:
    """Asked of every application that parsed, even one the scope will refuse: one query more on a
    path that refuses anyway, and the facts stay whole, so the decision alone orders the checks."""
    if isinstance(parsed, list):
        return None
    year = await store.full_year(conn, parsed.applicant.ags, fiscal_years(parsed), quota)
    return FullYear(year, quota.cap) if year is not None else None


async def receive(
    conn: asyncpg.Connection, cause: Envelope, facts: SubmissionFacts, application: FundingApplication, rules: Rules
) -> list[Outgoing]:
    """Number the application, remember the submission, show the status, stage application.received."""
    command = facts.command
    # The database's clock, read after the watermark lock was taken shared for this transaction: no
    # watermark computed meanwhile can pass it (watermarks.py).
    received_at = await store.hold_watermark(conn)
    [number] = await store.application_numbers(conn, 1)
    event = received(
        application,
        application_id=application_id(received_at, number),
        portal_id=command.portal_id,
        received_at=received_at,
        rules=rules,
        submission_id=command.submission_id,
        paused_by_admin=await store.category_paused(conn, application.project.category),
    )
    out = Envelope.wrap(
        event, source=SOURCE, subject=event.application_id, cause=cause, actor=f"portal:{command.portal_id}"
    )
    await store.record_submission(
        conn, command.portal_id, command.submission_id, facts.digest, store.StatusRow.of(event), out.id
    )
    return [Outgoing(APPLICATIONS, event.application_id, out)]


def ingress_routes(rules: Rules, quota: store.Quota, tolerance_seconds: float) -> dict[str, Handler]:
    async def submitted(conn: asyncpg.Connection, envelope: Envelope) -> Sequence[Outgoing]:
        return await on_submission(conn, envelope, rules, quota, tolerance_seconds)

    return {ev.SubmitApplication.wire_type(): submitted}


# --- categories paused and resumed by budget administrators --------------------------------------


async def on_category_paused(conn: asyncpg.Connection, envelope: Envelope) -> Sequence[Outgoing]:
    paused = envelope.payload(ev.CategoryPaused)
    await store.pause_category(conn, paused.category, envelope.time, envelope.id)
    return ()


async def on_category_resumed(conn: asyncpg.Connection, envelope: Envelope) -> Sequence[Outgoing]:
    await store.resume_category(conn, envelope.payload(ev.CategoryResumed).category)
    return ()


# The topic is one partition, so pauses and resumes arrive in the order budget published them;
# the fiscal-year events on it concern budget alone and are ignored.
CATEGORY_ROUTES: dict[str, Handler] = {
    ev.CategoryPaused.wire_type(): on_category_paused,
    ev.CategoryResumed.wire_type(): on_category_resumed,
}


# --- the status projection: every application event moves the read model forward ----------------

# event -> (status or None for "no status change", public detail for the timeline)
Projection = Callable[[Any], tuple[str | None, dict[str, Any]]]

PROJECTIONS: dict[type[Event], Projection] = {
    ev.ApplicationReceived: lambda p: ("received", {"category_open": p.category_open}),
    ev.ApplicationReviewed: lambda p: (p.outcome.value, {"rules_version": p.rules_version}),
    ev.DocumentsRequested: lambda p: (None, {"documents": p.documents}),
    ev.FundsEarmarked: lambda p: ("earmarked", {"fiscal_year": p.fiscal_year, "amount_cents": p.amount_cents}),
    ev.FundsReserved: lambda p: ("funds_reserved", {"fiscal_year": p.fiscal_year, "amount_cents": p.amount_cents}),
    ev.FundsCommitted: lambda p: (None, {"fiscal_year": p.fiscal_year, "amount_cents": p.amount_cents}),
    ev.ApplicationWaitlisted: lambda p: (
        "waitlisted",
        {"position": p.position, "reason": p.reason.value, "in_review": p.in_review},
    ),
    ev.FundsReleased: lambda p: (None, {"fiscal_year": p.fiscal_year, "reason": p.reason, "earmarked": p.earmarked}),
    ev.ApplicationDecided: lambda p: (p.decision.value, {"amount_cents": p.amount_cents, "reasons": p.reasons}),
    ev.ApplicationWithdrawn: lambda p: ("withdrawn", {}),
    ev.ApplicationCompleted: lambda p: (None, {"attachments": p.attachments}),
    ev.DocumentsSupplied: lambda p: (None, {"request_id": p.request_id, "documents": len(p.documents)}),
    ev.NotificationDelivered: lambda p: (None, {"notice_type": p.notice_type, "channel": p.channel.value}),
}


def project(event_class: type[Event], projection: Projection) -> Handler:
    async def handle(conn: asyncpg.Connection, envelope: Envelope) -> Sequence[Outgoing]:
        payload = envelope.payload(event_class)
        app_id = getattr(payload, "application_id", None)
        if app_id is None:
            return ()
        if isinstance(payload, ev.ApplicationReceived):
            await store.upsert_status(conn, store.StatusRow.of(payload))
        status, detail = projection(payload)
        if isinstance(payload, ev.DocumentsRequested):
            # The portal answers the request by its id (the event's), which the timeline shows it.
            await store.record_document_request(conn, envelope.id, app_id, payload.documents, envelope.time)
            detail = {**detail, "request_id": envelope.id}
        await store.project(conn, envelope.id, app_id, event_class.event_type, status, envelope.time, detail)
        return ()

    return handle


STATUS_ROUTES: dict[str, Handler] = {cls.wire_type(): project(cls, fn) for cls, fn in PROJECTIONS.items()}
