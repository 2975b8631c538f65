"""Notify's pure core: which event owes the municipality which notice, and what it says (in German).

Templates live in ``templates/<notice type>.txt``: the first line is the subject,
the rest the body; ``$name`` placeholders are filled from the event. Amounts are
formatted as euros, times in Europe/Berlin.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from string import Template
from typing import Any
from zoneinfo import ZoneInfo

from schemas import events as ev
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
    application_id: str
    subject: str
    text: str
    html: str


@cache
def _template(notice_type: str) -> tuple[Template, Template]:
    subject, _, body = (TEMPLATES / f"{notice_type}.txt").read_text(encoding="utf-8").partition("\n")
    return Template(subject), Template(body)


def render(notice_type: str, application_id: str, values: dict[str, Any]) -> Notice:
    subject_t, body_t = _template(notice_type)
    filled = {"application_id": application_id, **values}
    text = body_t.substitute(filled).strip() + "\n"
    paragraphs = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in text.split("\n\n") if p.strip())
    body_html = f'<!DOCTYPE html><html lang="de"><body>{paragraphs}</body></html>'
    return Notice(notice_type, application_id, subject_t.substitute(filled), text, body_html)


def _lines(items: list[str]) -> str:
    return "\n".join(f"- {item}" for item in items) or "- (keine Angabe)"


def _receipt(p: ev.ApplicationReceived) -> tuple[str, dict[str, Any]] | None:
    notice = (
        "Der Fördergegenstand kann derzeit bewilligt werden."
        if p.category_open
        else "Hinweis: Der Fördergegenstand ist derzeit ausgesetzt. Ihr Antrag bleibt erhalten und wartet, "
        "bis wieder Mittel zur Verfügung stehen."
    )
    return "receipt", {
        "received_at": berlin_time(p.received_at),
        "amount": euro(p.application.project.requested_amount_cents),
        "category_notice": notice,
    }


def _reviewed(p: ev.ApplicationReviewed) -> tuple[str, dict[str, Any]] | None:
    if p.outcome is ev.ReviewOutcome.INELIGIBLE:
        return "ineligible", {
            "rules_version": p.rules_version,
            "reasons": _lines([f.message_de for f in p.findings if not f.passed]),
        }
    if p.outcome is ev.ReviewOutcome.NEEDS_MANUAL_REVIEW:
        return "manual_review", {"reasons": _lines([f.message_de for f in p.findings if f.needs_person])}
    return None


def _waitlisted(p: ev.ApplicationWaitlisted) -> tuple[str, dict[str, Any]] | None:
    return "waitlisted", {
        "position": p.position,
        "reason": WAITLIST_REASONS_DE[p.reason],
        "amount": euro(p.amount_cents),
    }


def _decided(p: ev.ApplicationDecided) -> tuple[str, dict[str, Any]] | None:
    if p.decision is ev.Decision.APPROVED:
        funding = _lines([f"{f.fiscal_year}: {euro(f.amount_cents)}" for f in p.funding])
        return "approved", {"amount": euro(p.amount_cents), "funding": funding, "decided_at": berlin_time(p.decided_at)}
    budget_reasons = [DECISION_REASONS_DE[r] for r in p.reasons if r in DECISION_REASONS_DE]
    if not budget_reasons:
        return None  # an ineligibility: the municipality already got the "ineligible" notice with every reason
    return "rejected", {"reasons": _lines(budget_reasons), "decided_at": berlin_time(p.decided_at)}


def _withdrawn(p: ev.ApplicationWithdrawn) -> tuple[str, dict[str, Any]] | None:
    return "withdrawn", {}


NOTICE_RULES: dict[type[Event], Callable[[Any], tuple[str, dict[str, Any]] | None]] = {
    ev.ApplicationReceived: _receipt,
    ev.ApplicationReviewed: _reviewed,
    ev.ApplicationWaitlisted: _waitlisted,
    ev.ApplicationDecided: _decided,
    ev.ApplicationWithdrawn: _withdrawn,
}


def notice_for(envelope: Envelope, event_class: type[Event]) -> Notice | None:
    payload = envelope.payload(event_class)
    decided = NOTICE_RULES[event_class](payload)
    if decided is None:
        return None
    notice_type, values = decided
    return render(notice_type, str(payload.application_id), values)  # type: ignore[attr-defined]


def retry_delay(attempts: int, first_seconds: float, max_seconds: float, jitter: float) -> float:
    """Exponential backoff with full jitter (``jitter`` in [0, 1)): spreads retries of many notices."""
    # The exponent is bounded: 2 ** 1100 cannot become a float, and the cap is reached long before.
    ceiling = min(max_seconds, first_seconds * 2 ** min(max(0, attempts - 1), 1000))
    return float(max(first_seconds / 2, ceiling * jitter))
