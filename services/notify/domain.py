"""Notify's pure core: which event owes the municipality which notice, and what it says (in German).

Templates live in ``templates/<notice type>.txt``: the first line is the subject,
the rest the body; ``$name`` placeholders are filled from the event. Amounts are
formatted as euros, times in Europe/Berlin. Each notice also carries ``facts``:
the machine-readable part of a portal callback (cents, ISO times, codes).
"""

from __future__ import annotations

import html
import json
import uuid
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from schemas import events as ev

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

    from schemas.envelope import Envelope, Event

TEMPLATES = Path(__file__).parent / "templates"
BERLIN = ZoneInfo("Europe/Berlin")
NOTICE_NAMESPACE = uuid.UUID("6f1d3c52-31c8-4c39-9a43-5d0c1e7f1a10")

WAITLIST_REASONS_DE = {
    ev.WaitlistReason.INSUFFICIENT_FUNDS: "Mittel derzeit ausgeschöpft",
    ev.WaitlistReason.CATEGORY_PAUSED: "Fördergegenstand derzeit ausgesetzt",
    ev.WaitlistReason.NO_POT: "Haushaltsmittel für das Jahr noch nicht freigegeben",
}
DECISION_REASONS_DE = {
    "insufficient_funds": "Die Haushaltsmittel des Jahres reichen nicht aus.",
    "fiscal_year_closed": "Das Haushaltsjahr ist abgeschlossen.",
}
DOCUMENTS_DE = {
    "cost_plan": "Kostenplan",
    "project_description": "Projektbeschreibung",
    "security_concept": "Sicherheitskonzept",
}


def euro(cents: int) -> str:
    """German euro format from integer cents: 9600000 -> '96.000,00 €'."""
    whole, rest = divmod(abs(cents), 100)
    sign = "-" if cents < 0 else ""
    return f"{sign}{whole:,}".replace(",", ".") + f",{rest:02d} €"


def berlin_time(moment: datetime) -> str:
    return moment.astimezone(BERLIN).strftime("%d.%m.%Y, %H:%M Uhr")


def notice_id(cause_event_id: str, channel: str) -> uuid.UUID:
    """Stable: the same event and channel always give the same notice id."""
    return uuid.uuid5(NOTICE_NAMESPACE, f"{cause_event_id}/{channel}")


@dataclass(frozen=True)
class Notice:
    notice_type: str
    application_id: str | None  # None for a submission rejected at intake: it never became an application
    subject: str
    text: str
    html: str
    facts: Mapping[str, Any] = field(default_factory=dict)
    portal_id: str | None = None  # when the event names the portal; otherwise the recipient's portal applies


@dataclass(frozen=True)
class NoticeContext:
    """What notify remembers beyond the event itself."""

    promoted_amount_cents: int | None = None  # set when a reservation ends a waitlist stay: the requested amount
    holds_reservation: bool = False  # money is reserved for the application (not released, not committed)


@dataclass(frozen=True)
class Said:
    notice_type: str
    values: dict[str, Any]  # template placeholders, already formatted in German
    facts: dict[str, Any]  # the callback's machine-readable data


@cache
def _template(notice_type: str) -> tuple[Template, Template]:
    subject, _, body = (TEMPLATES / f"{notice_type}.txt").read_text(encoding="utf-8").partition("\n")
    return Template(subject), Template(body)


def render(
    notice_type: str,
    application_id: str | None,
    values: dict[str, Any],
    *,
    facts: Mapping[str, Any] | None = None,
    portal_id: str | None = None,
) -> Notice:
    subject_t, body_t = _template(notice_type)
    filled = {"application_id": application_id or "", **values}
    text = body_t.substitute(filled).strip() + "\n"
    body_html = f'<!DOCTYPE html><html lang="de"><body>{to_html(text)}</body></html>'
    return Notice(
        notice_type, application_id, subject_t.substitute(filled), text, body_html, dict(facts or {}), portal_id
    )


def to_html(text: str) -> str:
    """Paragraphs become <p>, runs of "- " lines become a <ul>; everything from events is escaped."""
    blocks: list[str] = []
    for paragraph in (p for p in text.split("\n\n") if p.strip()):
        lines: list[str] = []
        items: list[str] = []
        for line in paragraph.strip("\n").split("\n"):
            if line.startswith("- "):
                blocks.extend(_flush_paragraph(lines))
                items.append(f"<li>{html.escape(line[2:])}</li>")
            else:
                blocks.extend(_flush_list(items))
                lines.append(html.escape(line))
        blocks.extend(_flush_paragraph(lines) + _flush_list(items))
    return "".join(blocks)


def _flush_paragraph(lines: list[str]) -> list[str]:
    block = [f"<p>{'<br>'.join(lines)}</p>"] if lines else []
    lines.clear()
    return block


def _flush_list(items: list[str]) -> list[str]:
    block = [f"<ul>{''.join(items)}</ul>"] if items else []
    items.clear()
    return block


def _lines(items: list[str]) -> str:
    return "\n".join(f"- {item}" for item in items) or "- (keine Angabe)"


def _reasons(findings: list[ev.RuleFinding]) -> list[dict[str, str]]:
    return [{"rule_id": f.rule_id, "message": f.message_de} for f in findings]


# A receipt confirms arrival and says what happens next; it promises no funding, open category or not.
RECEIPT_OPEN_DE = "Ihr Antrag wird nun geprüft."
RECEIPT_PAUSED_DE = (
    "Hinweis: Der Fördergegenstand ist derzeit ausgesetzt. Ihr Antrag bleibt erhalten und wird geprüft; "
    "er wartet, bis der Fördergegenstand wieder geöffnet wird und Mittel zur Verfügung stehen."
)


def _receipt(p: ev.ApplicationReceived, _: NoticeContext) -> Said | None:
    notice = RECEIPT_OPEN_DE if p.category_open else RECEIPT_PAUSED_DE
    requested = p.application.project.requested_amount_cents
    values = {"received_at": berlin_time(p.received_at), "amount": euro(requested), "category_notice": notice}
    facts = {
        "received_at": p.received_at.isoformat(),
        "requested_amount_cents": requested,
        "category": p.application.project.category,
        "category_open": p.category_open,
    }
    return Said("receipt", values, facts)


# A record that did not prove its portal was not sent by the portal it names: telling that portal would let
# anyone who may write the submissions topic aim notices at another portal's endpoint.
UNAUTHENTICATED_PORTAL = "portal.unauthenticated"


def _intake_rejected(p: ev.ApplicationRejected, _: NoticeContext) -> Said | None:
    if any(e.code == UNAUTHENTICATED_PORTAL for e in p.errors):
        return None
    errors = [f"{e.detail} (Feld {e.pointer or '/'}, Code {e.code})" for e in p.errors]
    facts = {"submission_id": p.submission_id, "errors": [e.model_dump(mode="json") for e in p.errors]}
    return Said("intake_rejected", {"submission_id": p.submission_id, "errors": _lines(errors)}, facts)


def _reviewed(p: ev.ApplicationReviewed, _: NoticeContext) -> Said | None:
    if p.outcome is ev.ReviewOutcome.INELIGIBLE:
        failed = [f for f in p.findings if not f.passed]
        values = {"rules_version": p.rules_version, "reasons": _lines([f.message_de for f in failed])}
        return Said("ineligible", values, {"rules_version": p.rules_version, "reasons": _reasons(failed)})
    if p.outcome is ev.ReviewOutcome.NEEDS_MANUAL_REVIEW:
        for_person = [f for f in p.findings if f.needs_person]
        return Said("manual_review", {"reasons": _lines([f.message_de for f in for_person])}, {})
    return None


def _documents_requested(p: ev.DocumentsRequested, _: NoticeContext) -> Said | None:
    documents = _lines([DOCUMENTS_DE.get(kind, kind) for kind in p.documents])
    facts = {"documents": list(p.documents), "message": p.message_de}
    return Said("documents_requested", {"documents": documents, "message": p.message_de}, facts)


WAITLISTED_IN_REVIEW_DE = "Er wird noch geprüft; sein Platz in der Reihenfolge bleibt ihm dabei erhalten."
WAITLISTED_ELIGIBLE_DE = "Er ist förderfähig."


def _waitlisted(p: ev.ApplicationWaitlisted, _: NoticeContext) -> Said | None:
    """A place is told within moments of the receipt, mostly while review still runs: no word of eligibility then."""
    values = {
        "position": p.position,
        "reason": WAITLIST_REASONS_DE[p.reason],
        "amount": euro(p.amount_cents),
        "standing": WAITLISTED_IN_REVIEW_DE if p.in_review else WAITLISTED_ELIGIBLE_DE,
    }
    facts = {"position": p.position, "reason": p.reason.value, "amount_cents": p.amount_cents, "in_review": p.in_review}
    return Said("waitlisted", values, facts)


def _reserved(p: ev.FundsReserved, context: NoticeContext) -> Said | None:
    """A provisional reservation waits out budget's withdrawal window before the grant notice, so it is
    news of its own. Otherwise budget reserved, committed and decided in one go: the approval follows at
    once and a reservation notice would only repeat it. Moving up from the waitlist is news, and always told."""
    values = {"fiscal_year": p.fiscal_year, "year_amount": euro(p.amount_cents)}
    facts = {"fiscal_year": p.fiscal_year, "amount_cents": p.amount_cents}
    if context.promoted_amount_cents is not None:
        values["amount"] = euro(context.promoted_amount_cents)
        return Said("promoted", values, {**facts, "requested_amount_cents": context.promoted_amount_cents})
    return Said("reserved", values, facts) if p.provisional else None


def _decided(p: ev.ApplicationDecided, _: NoticeContext) -> Said | None:
    decided_at = berlin_time(p.decided_at)
    if p.decision is ev.Decision.APPROVED:
        funding = _lines([f"{f.fiscal_year}: {euro(f.amount_cents)}" for f in p.funding])
        facts = {
            "amount_cents": p.amount_cents,
            "funding": [f.model_dump(mode="json") for f in p.funding],
            "decided_at": p.decided_at.isoformat(),
        }
        return Said("approved", {"amount": euro(p.amount_cents), "funding": funding, "decided_at": decided_at}, facts)
    budget_reasons = [r for r in p.reasons if r in DECISION_REASONS_DE]
    if not budget_reasons:
        return None  # an ineligibility: the municipality already got the "ineligible" notice with every reason
    values = {"reasons": _lines([DECISION_REASONS_DE[r] for r in budget_reasons]), "decided_at": decided_at}
    return Said("rejected", values, {"reasons": budget_reasons, "decided_at": p.decided_at.isoformat()})


RELEASED_ON_WITHDRAWAL_DE = " Die für Ihren Antrag vorgemerkten Haushaltsmittel werden freigegeben."


def _withdrawn(p: ev.ApplicationWithdrawn, context: NoticeContext) -> Said | None:
    """Money is said to be released only when some was reserved: a waitlisted application had none."""
    released = RELEASED_ON_WITHDRAWAL_DE if context.holds_reservation else ""
    facts = {"reason": p.reason, "releases_reservation": context.holds_reservation}
    return Said("withdrawn", {"released": released}, facts)


NOTICE_RULES: dict[type[Event], Callable[[Any, NoticeContext], Said | None]] = {
    ev.ApplicationReceived: _receipt,
    ev.ApplicationRejected: _intake_rejected,
    ev.ApplicationReviewed: _reviewed,
    ev.DocumentsRequested: _documents_requested,
    ev.ApplicationWaitlisted: _waitlisted,
    ev.FundsReserved: _reserved,
    ev.ApplicationDecided: _decided,
    ev.ApplicationWithdrawn: _withdrawn,
}


def notice_for(envelope: Envelope, event_class: type[Event], context: NoticeContext | None = None) -> Notice | None:
    return notice_of(envelope.payload(event_class), context)


def notice_of(payload: Event, context: NoticeContext | None = None) -> Notice | None:
    said = NOTICE_RULES[type(payload)](payload, context or NoticeContext())
    if said is None:
        return None
    application_id: str | None = getattr(payload, "application_id", None)
    portal_id: str | None = getattr(payload, "portal_id", None)
    return render(said.notice_type, application_id, said.values, facts=said.facts, portal_id=portal_id)


def callback_body(notice: Notice, notice_id: uuid.UUID, cause: Envelope) -> bytes:
    """The portal's JSON, in the Standard Webhooks payload shape: ``type``, ``timestamp``, ``data``.
    Rendered once when the notice is stored, so every attempt sends the same bytes."""
    body = {
        "type": f"notice.{notice.notice_type}",
        "timestamp": cause.time.isoformat(),
        "data": {
            **notice.facts,
            "notice_id": str(notice_id),
            "notice_type": notice.notice_type,
            "application_id": notice.application_id,
            "event_id": cause.id,
            "event_type": cause.type,
            "subject": notice.subject,
            "text": notice.text,
        },
    }
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def retry_delay(attempts: int, first_seconds: float, max_seconds: float, jitter: float) -> float:
    """Exponential backoff with full jitter (``jitter`` in [0, 1)): spreads retries of many notices."""
    # The exponent is bounded: 2 ** 1100 cannot become a float, and the cap is reached long before.
    ceiling = min(max_seconds, first_seconds * 2 ** min(max(0, attempts - 1), 1000))
    return float(max(first_seconds / 2, ceiling * jitter))
