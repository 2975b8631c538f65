"""Notify: German notices from events, euro amounts, Berlin times, stable ids, retry backoff."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import events as ev
from schemas.application import FundingYear
from schemas.envelope import Envelope, Event
from services.notify.domain import (
    TEMPLATES,
    NoticeContext,
    berlin_time,
    euro,
    notice_for,
    notice_id,
    render,
    retry_delay,
)
from tests.unit import factories as f

pytestmark = pytest.mark.unit

APP_ID = "TH-EGOV-2027-000042"
RECEIVED = datetime(2027, 1, 15, 9, 30, tzinfo=UTC)  # 10:30 in Berlin (CET)
DECIDED = datetime(2027, 7, 1, 8, 5, tzinfo=UTC)  # 10:05 in Berlin (CEST)
GREETING = "Sehr geehrte Damen und Herren,"


def envelope(event: Event, *, event_id: str = "evt-1") -> Envelope:
    """Through the wire and back, as notify receives it."""
    wrapped = Envelope.wrap(event, source="/egov/test", subject=APP_ID, event_id=event_id, time=DECIDED)
    return Envelope.from_bytes(wrapped.to_bytes())


def finding(rule_id: str, passed: bool, de: str, *, needs_person: bool = False) -> ev.RuleFinding:
    return ev.RuleFinding(
        rule_id=rule_id, passed=passed, message_de=de, message_en=f"en: {de}", needs_person=needs_person
    )


def received(category_open: bool = True) -> ev.ApplicationReceived:
    return ev.ApplicationReceived(
        application_id=APP_ID,
        portal_id="portal-a",
        received_at=RECEIVED,
        category_open=category_open,
        application=f.funding_application(),
    )


def reviewed(outcome: ev.ReviewOutcome, findings: list[ev.RuleFinding]) -> ev.ApplicationReviewed:
    return ev.ApplicationReviewed(
        application_id=APP_ID,
        outcome=outcome,
        rules_version="egov-2024-v1",
        findings=findings,
        reviewer="automatic",
        category="dms_eservices",
        amount_cents=f.REQUESTED,
        funding=[FundingYear(fiscal_year=2027, amount_cents=f.REQUESTED)],
        received_at=RECEIVED,
        ready_at=RECEIVED + timedelta(minutes=1),
    )


def decided(decision: ev.Decision, reasons: list[str], amount: int = 0) -> ev.ApplicationDecided:
    funding = (
        [
            FundingYear(fiscal_year=2027, amount_cents=6_000_000),
            FundingYear(fiscal_year=2028, amount_cents=3_600_000),
        ]
        if amount
        else []
    )
    return ev.ApplicationDecided(
        application_id=APP_ID,
        decision=decision,
        amount_cents=amount,
        funding=funding,
        reasons=reasons,
        rules_version="egov-2024-v1",
        received_at=RECEIVED,
        decided_at=DECIDED,
    )


INELIGIBLE_FINDINGS = [
    finding("R01-applicant-in-thueringen", True, "Antragsteller und Partner sind Thüringer Kommunen."),
    finding("R05-grant-limits", False, "Die Zuwendung liegt außerhalb von Mindest- und Höchstbetrag."),
    finding("R07-attachments", False, "Es fehlen Unterlagen: cost_plan."),
]
MANUAL_FINDINGS = [
    finding("R05-grant-limits", True, "Die Zuwendung liegt zwischen Mindest- und Höchstbetrag."),
    finding(
        "R09-four-eyes", True, "Betrag über der Schwelle: zwei Sachbearbeitende müssen zustimmen.", needs_person=True
    ),
]

# notice type -> (the event that causes it, texts the notice must contain, texts it must not contain)
NoticeCase = tuple[Callable[[], Event], list[str], list[str]]
CASES: dict[str, NoticeCase] = {
    "receipt": (
        lambda: received(category_open=True),
        ["Eingangsbestätigung", "96.000,00 €", "15.01.2027, 10:30 Uhr", "wird nun geprüft", "keine Zusage"],
        ["ausgesetzt", "bewilligt werden"],
    ),
    "ineligible": (
        lambda: reviewed(ev.ReviewOutcome.INELIGIBLE, INELIGIBLE_FINDINGS),
        ["egov-2024-v1", "- Die Zuwendung liegt außerhalb", "- Es fehlen Unterlagen: cost_plan."],
        ["Thüringer Kommunen."],  # a passed rule is no reason
    ),
    "manual_review": (
        lambda: reviewed(ev.ReviewOutcome.NEEDS_MANUAL_REVIEW, MANUAL_FINDINGS),
        ["persönlich geprüft", "- Betrag über der Schwelle"],
        ["Mindest- und Höchstbetrag"],
    ),
    "waitlisted": (
        lambda: ev.ApplicationWaitlisted(
            application_id=APP_ID,
            position=7,
            reason=ev.WaitlistReason.INSUFFICIENT_FUNDS,
            amount_cents=f.REQUESTED,
            ready_at=RECEIVED,
        ),
        ["Warteliste: 7", "Mittel derzeit ausgeschöpft", "96.000,00 €", "förderfähig", "vollständig eingegangen"],
        ["geprüft"],
    ),
    "approved": (
        lambda: decided(ev.Decision.APPROVED, [], amount=f.REQUESTED),
        ["in Höhe von 96.000,00 € bewilligt", "- 2027: 60.000,00 €", "- 2028: 36.000,00 €", "01.07.2027, 10:05 Uhr"],
        [],
    ),
    "rejected": (
        lambda: decided(ev.Decision.REJECTED, ["insufficient_funds"]),
        ["nicht bewilligt", "Die Haushaltsmittel des Jahres reichen nicht aus.", "01.07.2027, 10:05 Uhr"],
        ["insufficient_funds"],
    ),
    "withdrawn": (
        lambda: ev.ApplicationWithdrawn(application_id=APP_ID, portal_id="portal-a", reason="Projekt verschoben"),
        ["Rücknahme"],
        ["freigegeben"],  # nothing known to be reserved: a waitlisted application had no money to release
    ),
}


# Notices that need more than the event (a remembered promotion, a setting) or have no application yet.
OTHER_CASES = {"documents_requested", "intake_rejected", "promoted", "reserved"}


def test_every_template_has_a_case() -> None:
    assert {p.stem for p in TEMPLATES.glob("*.txt")} == set(CASES) | OTHER_CASES


def test_documents_requested_lists_the_missing_documents_in_german() -> None:
    event = ev.DocumentsRequested(
        application_id=APP_ID,
        requested_by="caseworker:anna",
        documents=["cost_plan"],
        message_de="Bitte reichen Sie den Kostenplan nach.",
    )
    notice = notice_for(envelope(event), ev.DocumentsRequested)
    assert notice is not None
    assert notice.notice_type == "documents_requested"
    assert APP_ID in notice.subject
    assert "Bitte reichen Sie den Kostenplan nach." in notice.text
    assert "cost_plan" not in notice.text.replace("Kostenplan", ""), "document kinds are named in German"


def test_a_submission_rejected_at_intake_gets_every_error_and_no_application_id() -> None:
    problems = [
        ev.ProblemItem(code="field.required", pointer="/contact", detail="Field required"),
        ev.ProblemItem(
            code="amount.requested_exceeds_eligible",
            pointer="/project/requested_amount_cents",
            detail="requested amount exceeds the eligible cost",
        ),
    ]
    event = ev.ApplicationRejected(portal_id="portal-a", submission_id="sub-77", errors=problems)
    notice = notice_for(envelope(event), ev.ApplicationRejected)
    assert notice is not None
    assert notice.application_id is None
    assert "sub-77" in notice.subject
    assert "/contact" in notice.text
    assert "amount.requested_exceeds_eligible" in notice.text


def test_a_submission_that_did_not_prove_its_portal_tells_that_portal_nothing() -> None:
    forged = ev.ProblemItem(code="portal.unauthenticated", pointer="", detail="no valid signature by this portal")
    event = ev.ApplicationRejected(portal_id="portal-victim", submission_id="sub-forged", errors=[forged])
    assert notice_for(envelope(event), ev.ApplicationRejected) is None


def test_a_reservation_is_told_only_when_provisional_and_a_promotion_always() -> None:
    event = ev.FundsReserved(application_id=APP_ID, fiscal_year=2027, amount_cents=f.REQUESTED, ready_at=RECEIVED)
    assert notice_for(envelope(event), ev.FundsReserved) is None
    provisional = event.model_copy(update={"provisional": True})  # budget has a withdrawal window
    reserved = notice_for(envelope(provisional), ev.FundsReserved)
    assert reserved is not None
    assert reserved.notice_type == "reserved"
    assert "96.000,00 €" in reserved.text
    promoted = notice_for(envelope(event), ev.FundsReserved, NoticeContext(promoted_amount_cents=f.REQUESTED))
    assert promoted is not None
    assert promoted.notice_type == "promoted"
    assert "Warteliste" in promoted.text
    assert "96.000,00 €" in promoted.text


def test_a_place_told_during_review_claims_no_eligibility() -> None:
    event = ev.ApplicationWaitlisted(
        application_id=APP_ID,
        position=3,
        reason=ev.WaitlistReason.INSUFFICIENT_FUNDS,
        amount_cents=f.REQUESTED,
        ready_at=RECEIVED,
        place_at=RECEIVED,
        in_review=True,
    )
    notice = notice_for(envelope(event), type(event))
    assert notice is not None
    assert "Warteliste: 3" in notice.text
    assert "noch geprüft" in notice.text
    assert "Platz in der Reihenfolge bleibt" in notice.text
    assert "förderfähig" not in notice.text


@pytest.mark.parametrize("notice_type", sorted(CASES))
def test_each_template_renders_from_its_event(notice_type: str) -> None:
    make, must, must_not = CASES[notice_type]
    event = make()
    notice = notice_for(envelope(event), type(event))
    assert notice is not None
    assert notice.notice_type == notice_type
    assert notice.application_id == APP_ID
    assert APP_ID in notice.subject
    assert APP_ID in notice.text
    assert notice.text.startswith(GREETING)
    assert notice.text.endswith("Kommunale Digitalisierungsförderung\n")
    assert "$" not in notice.subject + notice.text, "an unfilled placeholder"
    whole = notice.subject + "\n" + notice.text
    for text in must:
        assert text in whole, text
    for text in must_not:
        assert text not in whole, text
    assert notice.html.startswith('<!DOCTYPE html><html lang="de"><body><p>')
    assert notice.html.endswith("</p></body></html>")
    assert APP_ID in notice.html
    assert GREETING in notice.html


def test_receipt_tells_at_once_when_the_category_is_paused() -> None:
    notice = notice_for(envelope(received(category_open=False)), ev.ApplicationReceived)
    assert notice is not None
    assert "ausgesetzt" in notice.text
    assert "wartet, bis der Fördergegenstand wieder geöffnet wird" in notice.text
    assert "kann derzeit bewilligt werden" not in notice.text


@pytest.mark.parametrize("holds_reservation", [True, False])
def test_a_withdrawal_says_money_is_released_only_when_some_was_reserved(holds_reservation: bool) -> None:
    event = ev.ApplicationWithdrawn(application_id=APP_ID, portal_id="portal-a")
    notice = notice_for(envelope(event), ev.ApplicationWithdrawn, NoticeContext(holds_reservation=holds_reservation))
    assert notice is not None
    assert f"wir bestätigen die Rücknahme Ihres Antrags {APP_ID}." in notice.text
    assert ("vorgemerkten Haushaltsmittel werden freigegeben" in notice.text) is holds_reservation
    assert notice.facts["releases_reservation"] is holds_reservation


@pytest.mark.parametrize("category_open", [True, False])
def test_a_receipt_confirms_arrival_and_promises_no_funding(category_open: bool) -> None:
    """A receipt is no grant notice: it says the application arrived and will be reviewed, nothing more."""
    notice = notice_for(envelope(received(category_open=category_open)), ev.ApplicationReceived)
    assert notice is not None
    assert "geprüft" in notice.text
    assert "Diese Bestätigung ist keine Zusage einer Förderung." in notice.text
    assert "bewilligt werden" not in notice.text
    assert "bewilligt" not in notice.subject


@pytest.mark.parametrize(
    ("reason", "german"),
    [
        (ev.WaitlistReason.CATEGORY_PAUSED, "Fördergegenstand derzeit ausgesetzt"),
        (ev.WaitlistReason.NO_POT, "Haushaltsmittel für das Jahr noch nicht freigegeben"),
    ],
)
def test_waitlist_notice_names_the_reason_in_german(reason: ev.WaitlistReason, german: str) -> None:
    event = ev.ApplicationWaitlisted(
        application_id=APP_ID, position=1, reason=reason, amount_cents=1, ready_at=RECEIVED
    )
    notice = notice_for(envelope(event), ev.ApplicationWaitlisted)
    assert notice is not None
    assert german in notice.text
    assert "0,01 €" in notice.text


@pytest.mark.parametrize(
    "event",
    [
        decided(ev.Decision.REJECTED, ["R05-grant-limits", "R07-attachments"]),
        decided(ev.Decision.REJECTED, []),
        reviewed(ev.ReviewOutcome.ELIGIBLE, MANUAL_FINDINGS[:1]),
    ],
    ids=["rejected-ineligible", "rejected-no-reason", "eligible"],
)
def test_events_that_owe_no_notice(event: Event) -> None:
    assert notice_for(envelope(event), type(event)) is None


def test_rejection_for_money_lists_only_the_budget_reasons() -> None:
    event = decided(ev.Decision.REJECTED, ["R05-grant-limits", "fiscal_year_closed", "insufficient_funds"])
    notice = notice_for(envelope(event), ev.ApplicationDecided)
    assert notice is not None
    assert notice.notice_type == "rejected"
    assert "Das Haushaltsjahr ist abgeschlossen." in notice.text
    assert "Die Haushaltsmittel des Jahres reichen nicht aus." in notice.text
    assert "R05" not in notice.text


def test_html_escapes_what_came_from_events() -> None:
    event = reviewed(ev.ReviewOutcome.INELIGIBLE, [finding("R99", False, "Fehler <script>alert(1)</script> & mehr")])
    notice = notice_for(envelope(event), ev.ApplicationReviewed)
    assert notice is not None
    assert "<script>" in notice.text
    assert "<script>" not in notice.html
    assert "&lt;script&gt;" in notice.html
    assert "&amp; mehr" in notice.html


def test_values_are_not_reinterpreted_as_placeholders() -> None:
    notice = render("withdrawn", "TH-EGOV-2027-$amount", {"released": ""})
    assert "TH-EGOV-2027-$amount" in notice.text


def test_notice_for_refuses_the_wrong_event_class() -> None:
    with pytest.raises(TypeError):
        notice_for(envelope(received()), ev.ApplicationWithdrawn)


# --- euro ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cents", "text"),
    [
        (0, "0,00 €"),
        (1, "0,01 €"),
        (10, "0,10 €"),
        (99, "0,99 €"),
        (100, "1,00 €"),
        (123_456, "1.234,56 €"),
        (9_600_000, "96.000,00 €"),
        (100_000_000, "1.000.000,00 €"),
        (1_000_000_000, "10.000.000,00 €"),
        (10**13, "100.000.000.000,00 €"),
        (-150, "-1,50 €"),
        (-1, "-0,01 €"),
    ],
)
def test_euro_formats_cents_the_german_way(cents: int, text: str) -> None:
    assert euro(cents) == text


@settings(max_examples=200, deadline=None, database=None)
@given(st.integers(-(10**15), 10**15))
def test_euro_round_trips_to_the_same_cents(cents: int) -> None:
    text = euro(cents)
    assert re.fullmatch(r"-?\d{1,3}(\.\d{3})*,\d{2} €", text), text
    assert int(text.removesuffix(" €").replace(".", "").replace(",", "")) == cents


# --- Berlin time ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2027, 7, 1, 10, 0, tzinfo=UTC), "01.07.2027, 12:00 Uhr"),  # CEST, UTC+2
        (datetime(2027, 1, 15, 10, 0, tzinfo=UTC), "15.01.2027, 11:00 Uhr"),  # CET, UTC+1
        (datetime(2027, 12, 31, 23, 30, tzinfo=UTC), "01.01.2028, 00:30 Uhr"),  # the date moves too
        (datetime(2027, 3, 28, 0, 59, tzinfo=UTC), "28.03.2027, 01:59 Uhr"),  # just before the switch to summer time
        (datetime(2027, 3, 28, 1, 0, tzinfo=UTC), "28.03.2027, 03:00 Uhr"),  # just after
        (datetime(2027, 10, 31, 1, 0, tzinfo=UTC), "31.10.2027, 02:00 Uhr"),  # back to winter time
        (datetime(2027, 7, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5))), "01.07.2027, 19:00 Uhr"),
    ],
)
def test_berlin_time(moment: datetime, text: str) -> None:
    assert berlin_time(moment) == text


# --- notice ids -----------------------------------------------------------------------


def test_notice_id_is_stable_and_depends_on_event_and_channel() -> None:
    first = notice_id("evt-1", "email")
    assert first == notice_id("evt-1", "email")
    assert isinstance(first, uuid.UUID)
    assert first.version == 5
    others = {notice_id("evt-1", "callback"), notice_id("evt-2", "email"), notice_id("evt-1/email", "")}
    assert first not in others
    assert len(others) == 3


# --- retry backoff ----------------------------------------------------------------------


def test_retry_delay_doubles_per_attempt() -> None:
    delays = [retry_delay(n, 2.0, 10_000.0, 0.5) for n in range(1, 8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]


def test_retry_delay_is_capped() -> None:
    assert retry_delay(20, 2.0, 300.0, 0.999) == pytest.approx(299.7)
    assert retry_delay(10, 2.0, 300.0, 0.999) <= 300.0
    assert retry_delay(5000, 2.0, 300.0, 0.5) == 150.0  # very many attempts: still capped, no overflow


def test_retry_delay_has_a_floor_of_half_the_first_delay() -> None:
    assert retry_delay(1, 2.0, 300.0, 0.0) == 1.0
    assert retry_delay(0, 2.0, 300.0, 0.9) == pytest.approx(1.8)


@settings(max_examples=300, deadline=None, database=None)
@given(
    attempts=st.integers(1, 200),
    first=st.floats(0.01, 60.0),
    cap=st.floats(60.0, 86_400.0),
    jitter=st.floats(0.0, 1.0, exclude_max=True),
)
def test_retry_delay_respects_the_jitter_bounds(attempts: int, first: float, cap: float, jitter: float) -> None:
    delay = retry_delay(attempts, first, cap, jitter)
    ceiling = min(cap, first * 2 ** (attempts - 1))
    assert first / 2 <= delay <= ceiling
    assert delay == pytest.approx(max(first / 2, ceiling * jitter))
    assert retry_delay(attempts + 1, first, cap, jitter) >= delay  # never shrinks for the same draw
