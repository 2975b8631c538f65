"""verify over seeded logs: a clean history passes, and each kind of violation seeded into it is caught."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.verify import Report, unreadable_records, verify
from runtime.signing import Signer, key_id
from schemas import events as ev
from schemas.application import FundingYear
from schemas.envelope import Envelope, Event
from tests.unit import factories as f

pytestmark = pytest.mark.unit

T0 = datetime(2027, 1, 15, 9, 0, tzinfo=UTC)
YEAR = 2027
INTAKE, REVIEW, BUDGET, NOTIFY = "/egov/intake", "/egov/review", "/egov/budget", "/egov/notify"


def app(n: int) -> str:
    return f"TH-EGOV-2027-{n:06d}"


class Log:
    """A history written the way the services write it, one second apart."""

    def __init__(self, signer: Signer | None = None) -> None:
        self.events: list[Envelope] = []
        self.clock = T0
        self.signer = signer
        self.received_at: dict[str, datetime] = {}
        self.reviews: dict[str, Envelope] = {}

    def add(self, event: Event, subject: str, source: str, cause: Envelope | None = None) -> Envelope:
        self.clock += timedelta(seconds=1)
        envelope = Envelope.wrap(event, source=source, subject=subject, cause=cause, actor="test", time=self.clock)
        if self.signer and isinstance(event, ev.ApplicationDecided):
            envelope = self.signer.sign(envelope)
        self.events.append(envelope)
        return envelope

    def open_year(self, pot: int) -> Envelope:
        return self.add(ev.FiscalYearOpened(fiscal_year=YEAR, pot_cents=pot), str(YEAR), BUDGET)

    def adjust(self, previous: int, pot: int) -> Envelope:
        return self.add(ev.PotAdjusted(fiscal_year=YEAR, previous_pot_cents=previous, pot_cents=pot), str(YEAR), BUDGET)

    def receive(self, n: int, category_open: bool = True, *, amount: int | None = None) -> Envelope:
        """``amount``: requested from YEAR (else the sample application's, from a later year)."""
        self.received_at[app(n)] = self.clock + timedelta(seconds=1)
        received = ev.ApplicationReceived(
            application_id=app(n),
            portal_id="portal-a",
            received_at=self.received_at[app(n)],
            category_open=category_open,
            # No attachments announced: complete at receipt, so the receipt time is the place.
            application=f.funding_application({**(f.amounts(amount, year=YEAR) if amount else {}), "attachments": []}),
        )
        return self.add(received, app(n), INTAKE)

    def review(self, n: int, amount: int, *, eligible: bool = True, category: str = "dms_eservices") -> Envelope:
        outcome = ev.ReviewOutcome.ELIGIBLE if eligible else ev.ReviewOutcome.INELIGIBLE
        finding = ev.RuleFinding(rule_id="R05-grant-limits", passed=eligible, message_de="x", message_en="x")
        reviewed = ev.ApplicationReviewed(
            application_id=app(n),
            outcome=outcome,
            rules_version="egov-2024-v1",
            findings=[finding],
            reviewer="automatic",
            category=category,
            amount_cents=amount,
            funding=[FundingYear(fiscal_year=YEAR, amount_cents=amount)],
            received_at=self.received_at[app(n)],
            ready_at=self.clock + timedelta(seconds=1),
        )
        received = next(e for e in self.events if e.subject == app(n) and e.is_a(ev.ApplicationReceived))
        self.reviews[app(n)] = self.add(reviewed, app(n), REVIEW, received)
        return self.reviews[app(n)]

    def reserve(self, n: int, amount: int, cause: Envelope | None = None) -> Envelope:
        ready = self.reviews[app(n)].data["ready_at"]
        event = ev.FundsReserved(application_id=app(n), fiscal_year=YEAR, amount_cents=amount, ready_at=ready)
        return self.add(event, app(n), BUDGET, cause or self.reviews[app(n)])

    def approve(self, n: int, amount: int) -> Envelope:
        """Commit the reservation and decide: budget does both in one transaction."""
        committed = ev.FundsCommitted(application_id=app(n), fiscal_year=YEAR, amount_cents=amount)
        self.add(committed, app(n), BUDGET, self.reviews[app(n)])
        return self.decide(n, ev.Decision.APPROVED, amount)

    def decide(self, n: int, decision: ev.Decision, amount: int = 0, reasons: tuple[str, ...] = ()) -> Envelope:
        decided = ev.ApplicationDecided(
            application_id=app(n),
            decision=decision,
            amount_cents=amount,
            funding=[FundingYear(fiscal_year=YEAR, amount_cents=amount)] if amount else [],
            reasons=list(reasons),
            rules_version="egov-2024-v1",
            received_at=self.received_at[app(n)],
            decided_at=self.clock,
        )
        return self.add(decided, app(n), BUDGET, self.reviews.get(app(n)))

    def waitlist(self, n: int, position: int, amount: int, reason: ev.WaitlistReason) -> Envelope:
        ready = self.reviews[app(n)].data["ready_at"]
        event = ev.ApplicationWaitlisted(
            application_id=app(n), position=position, reason=reason, amount_cents=amount, ready_at=ready
        )
        return self.add(event, app(n), BUDGET, self.reviews[app(n)])

    def withdraw(self, n: int) -> Envelope:
        return self.add(ev.ApplicationWithdrawn(application_id=app(n), portal_id="portal-a"), app(n), INTAKE)

    def release(self, n: int, amount: int, cause: Envelope) -> Envelope:
        event = ev.FundsReleased(application_id=app(n), fiscal_year=YEAR, amount_cents=amount, reason="withdrawn")
        return self.add(event, app(n), BUDGET, cause)


def clean_log(signer: Signer | None = None, *, promote_out_of_order: bool = False) -> Log:
    """One fiscal year through a realistic history: approvals, a line served after the pot was
    raised, a rejection, a paused category waiting, a withdrawal with a release, one still in review."""
    log = Log(signer)
    log.open_year(300)
    for n, amount in ((1, 100), (2, 150)):
        log.receive(n)
        log.review(n, amount)
        log.reserve(n, amount)
        log.approve(n, amount)
    log.receive(3)
    log.review(3, 100)
    log.waitlist(3, 1, 100, ev.WaitlistReason.INSUFFICIENT_FUNDS)
    log.receive(4)
    log.review(4, 40)  # it would fit, but under the strict policy it waits behind 3
    log.waitlist(4, 2, 40, ev.WaitlistReason.INSUFFICIENT_FUNDS)
    log.receive(5)
    log.review(5, 100, eligible=False)
    log.decide(5, ev.Decision.REJECTED, reasons=("R05-grant-limits",))
    log.receive(6, category_open=False)
    log.review(6, 10, category="training")
    log.waitlist(6, 3, 10, ev.WaitlistReason.CATEGORY_PAUSED)
    raised = log.adjust(300, 500)
    for n, amount in ((4, 40), (3, 100)) if promote_out_of_order else ((3, 100), (4, 40)):
        log.reserve(n, amount, raised)
    for n, amount in ((3, 100), (4, 40)):
        log.approve(n, amount)
    log.receive(7)
    log.review(7, 50)  # reserved while 6 waits: 6's category is paused, so it does not block
    log.reserve(7, 50)
    withdrawn = log.withdraw(7)
    log.release(7, 50, withdrawn)
    log.receive(8)  # still in review
    decided = next(e for e in log.events if e.subject == app(1) and e.is_a(ev.ApplicationDecided))
    delivered = ev.NotificationDelivered(
        notice_id="n-1",
        application_id=app(1),
        notice_type="approved",
        channel=ev.NoticeChannel.EMAIL,
        attempts=1,
        delivered_at=log.clock,
    )
    log.add(delivered, app(1), NOTIFY, decided)
    return log


def checks_failed(report: Report) -> list[str]:
    return sorted({v.check for v in report.violations})


def first(log: Log, n: int, event_class: type[Event]) -> Envelope:
    return next(e for e in log.events if e.subject == app(n) and e.is_a(event_class))


# --- a clean log passes ------------------------------------------------------------------------


def test_a_clean_log_passes_and_shows_what_is_in_progress() -> None:
    log = clean_log()
    receipt = ev.NotificationDelivered(
        notice_id="n-8",
        application_id=app(8),
        notice_type="receipt",
        channel=ev.NoticeChannel.EMAIL,
        attempts=1,
        delivered_at=log.clock,
    )
    log.add(receipt, app(8), NOTIFY, first(log, 8, ev.ApplicationReceived))
    report = verify(log.events)
    assert report.violations == []
    assert report.ok
    assert sorted((p.application_id, p.last_type) for p in report.in_progress) == [
        (app(6), "budget.waitlisted.v1"),
        (app(8), "application.received.v1"),  # where it stands, not the last notice about it
    ]
    assert report.applications == 8


def test_a_redelivered_event_is_counted_once() -> None:
    log = clean_log()
    assert verify([*log.events, *log.events]).ok


# --- each kind of violation is caught ----------------------------------------------------------


def test_a_second_reservation_is_caught() -> None:
    log = clean_log()
    first_reservation = first(log, 1, ev.FundsReserved)
    again = log.reserve(1, 100)
    report = verify(log.events)
    assert checks_failed(report) == ["reserved-twice"]
    (violation,) = report.violations
    assert violation.events == (first_reservation.id, again.id)
    assert (violation.applications, violation.fiscal_year) == ((app(1),), YEAR)


def test_a_reservation_after_a_release_is_no_second_reservation() -> None:
    log = clean_log()
    log.reserve(7, 50)
    assert verify(log.events).ok


def test_a_missing_decision_is_caught() -> None:
    log = clean_log()
    decided = first(log, 2, ev.ApplicationDecided)
    report = verify([e for e in log.events if e.id != decided.id])
    assert checks_failed(report) == ["final-decision"]
    (violation,) = report.violations
    assert violation.events == (first(log, 2, ev.FundsCommitted).id,)
    assert "committed" in violation.message


def test_a_second_decision_is_caught() -> None:
    log = clean_log()
    again = log.decide(5, ev.Decision.REJECTED, reasons=("R05-grant-limits",))
    report = verify(log.events)
    assert checks_failed(report) == ["final-decision"]
    assert report.violations[0].events == (first(log, 5, ev.ApplicationDecided).id, again.id)


def test_a_decision_after_a_withdrawal_is_caught_unless_it_is_about_the_withdrawal() -> None:
    log = clean_log()
    log.withdraw(8)
    log.review(8, 10, eligible=False)
    late = log.decide(8, ev.Decision.REJECTED, reasons=("R05-grant-limits",))
    report = verify(log.events)
    assert checks_failed(report) == ["final-decision"]
    assert late.id in report.violations[0].events
    log.events.remove(late)
    log.decide(8, ev.Decision.REJECTED, reasons=("withdrawn",))
    assert verify(log.events).ok


def test_an_over_commitment_is_caught() -> None:
    log = clean_log()
    log.receive(9)
    log.review(9, 200)
    over = log.reserve(9, 200)  # 500 - 390 committed leaves 110
    report = verify(log.events)
    assert checks_failed(report) == ["over-commitment"]
    (violation,) = report.violations
    raised = next(e for e in log.events if e.is_a(ev.PotAdjusted))
    assert violation.events == (over.id, raised.id)
    assert violation.fiscal_year == YEAR
    assert "exceeds the pot of 5.00 EUR" in violation.message


def test_lowering_the_pot_below_what_is_held_is_an_over_commitment() -> None:
    log = clean_log()
    lowered = log.adjust(500, 300)
    report = verify(log.events)
    assert checks_failed(report) == ["over-commitment"]
    assert report.violations[0].events == (lowered.id,)


def test_an_out_of_order_promotion_is_caught() -> None:
    log = clean_log(promote_out_of_order=True)
    report = verify(log.events)
    assert checks_failed(report) == ["line-order"]
    (violation,) = report.violations
    assert violation.applications == (app(4), app(3))
    assert violation.events == (first(log, 4, ev.FundsReserved).id, first(log, 3, ev.ApplicationReceived).id)


def test_passing_over_several_is_one_violation_naming_the_first() -> None:
    log = clean_log()
    for n in (9, 10):
        log.receive(n)
        log.review(n, 200)
        log.waitlist(n, n - 8, 200, ev.WaitlistReason.INSUFFICIENT_FUNDS)
    log.receive(11)
    log.review(11, 5)
    log.reserve(11, 5)
    (violation,) = verify(log.events).violations
    assert violation.applications == (app(11), app(9))
    assert violation.message.endswith("was still waiting (and 1 more after it)")


def test_first_fit_lets_a_later_one_pass_only_when_the_earlier_one_did_not_fit() -> None:
    log = clean_log()
    log.adjust(500, 500 - 110)  # nothing left: 390 is committed
    log.receive(9)
    log.review(9, 100)
    log.waitlist(9, 1, 100, ev.WaitlistReason.INSUFFICIENT_FUNDS)
    raised = log.adjust(390, 450)
    log.receive(10)
    log.review(10, 40)
    log.reserve(10, 40, raised)  # 60 available: 9 does not fit, 10 does
    assert verify(log.events, policy="first_fit").ok
    assert checks_failed(verify(log.events, policy="strict")) == ["line-order"]
    log.adjust(450, 600)
    log.receive(11)
    log.review(11, 5)
    log.reserve(11, 5)  # 9 would have fit now and is passed over
    assert checks_failed(verify(log.events, policy="first_fit")) == ["line-order"]


def test_a_resumed_category_blocks_again() -> None:
    log = clean_log()
    log.add(ev.CategoryResumed(category="training"), "category:training", BUDGET)
    log.receive(9)
    log.review(9, 20)
    log.reserve(9, 20)  # 6 came first and its category is open again
    report = verify(log.events)
    assert checks_failed(report) == ["line-order"]
    assert report.violations[0].applications == (app(9), app(6))


def test_a_missing_cause_is_caught() -> None:
    log = clean_log()
    ghost = Envelope.wrap(ev.ApplicationWithdrawn(application_id=app(99), portal_id="p"), source=INTAKE, subject="x")
    orphan = log.add(ev.CategoryPaused(category="training"), "category:training", BUDGET, ghost)
    report = verify(log.events)
    assert checks_failed(report) == ["causation"]
    assert report.violations[0].events == (orphan.id,)
    assert ghost.id in report.violations[0].message


def test_an_over_commitment_is_reported_where_it_starts() -> None:
    log = clean_log()
    log.adjust(500, 300)
    log.receive(9)
    log.review(9, 10)
    log.reserve(9, 10)  # still over: the same violation, not a new one
    assert len(verify(log.events).violations) == 1


def test_a_receipt_whose_submission_expired_with_its_topic_is_no_missing_cause() -> None:
    log = clean_log()
    submission = Envelope.wrap(
        ev.ApplicationWithdrawn(application_id=app(9), portal_id="p"), source="/portal", subject=app(9)
    )
    log.add(ev.CategoryPaused(category="training"), "category:training", BUDGET)
    log.events[-1] = log.events[-1].model_copy(update={"time": T0 + timedelta(days=31)})
    log.clock = T0
    received = log.receive(9)
    log.events[-1] = received.model_copy(update={"causationid": submission.id})
    assert verify(log.events).ok  # the submission lived 30 days on its topic; the log is 31 days older
    log.events[-2] = log.events[-2].model_copy(update={"time": T0 + timedelta(days=29)})
    assert checks_failed(verify(log.events)) == ["causation"]


def test_a_decision_without_a_review_is_caught() -> None:
    log = clean_log()
    log.receive(9)
    unreviewed = log.decide(9, ev.Decision.APPROVED, 10)
    report = verify(log.events)
    assert checks_failed(report) == ["decision-chain", "review-before-decision"], "and it has no chain either"
    assert {v.events for v in report.violations} == {(unreviewed.id,)}


# --- a decision's causal chain leads back to its review and its receipt -------------------------


def with_cause(log: Log, envelope: Envelope, **update: object) -> Envelope:
    """Rewrite an event already in the log (and the review a later decision names)."""
    changed = envelope.model_copy(update=update)
    log.events[log.events.index(envelope)] = changed
    if log.reviews.get(envelope.subject) is envelope:
        log.reviews[envelope.subject] = changed
    return changed


def decision_chain(report: Report) -> str:
    (violation,) = [v for v in report.violations if v.check == "decision-chain"]
    return violation.message


def test_a_decision_on_a_review_with_no_receipt_of_its_application_behind_it_is_caught() -> None:
    log = clean_log()
    log.receive(9)
    review = log.review(9, 10, eligible=False)
    with_cause(log, review, causationid=first(log, 8, ev.ApplicationReceived).id)  # another application's receipt
    decided = log.decide(9, ev.Decision.REJECTED, reasons=("R05-grant-limits",))
    report = verify(log.events)
    assert checks_failed(report) == ["decision-chain"]
    assert report.violations[0].events == (decided.id,)
    assert report.violations[0].applications == (app(9),)
    assert "leaves the application" in decision_chain(report)


def test_a_decision_on_a_review_that_names_no_cause_is_caught() -> None:
    log = clean_log()
    log.receive(9)
    with_cause(log, log.review(9, 10, eligible=False), causationid=None)
    log.decide(9, ev.Decision.REJECTED, reasons=("R05-grant-limits",))
    report = verify(log.events)
    assert checks_failed(report) == ["decision-chain"]
    assert "names no cause" in decision_chain(report)


def test_a_decision_whose_cause_is_not_in_the_log_is_caught() -> None:
    log = clean_log()
    log.receive(9)
    log.review(9, 10, eligible=False)
    decided = log.decide(9, ev.Decision.REJECTED, reasons=("R05-grant-limits",))
    with_cause(log, decided, causationid="no-such-event")
    report = verify(log.events)
    assert checks_failed(report) == ["causation", "decision-chain"]
    assert "no-such-event, which is not in the log" in decision_chain(report)


def test_a_receipt_not_written_by_intake_does_not_stand_behind_a_decision() -> None:
    log = clean_log()
    forged = log.receive(9)
    with_cause(log, forged, source="/portals/portal-x")  # e.g. a portal's record shaped like a receipt
    log.review(9, 10, eligible=False)
    log.decide(9, ev.Decision.REJECTED, reasons=("R05-grant-limits",))
    report = verify(log.events)
    assert checks_failed(report) == ["decision-chain"]
    assert "not written by intake" in decision_chain(report)


def test_a_decision_caused_from_outside_rests_on_the_applications_own_review() -> None:
    log = clean_log()
    closed = log.add(ev.FiscalYearClosed(fiscal_year=YEAR, waiting_policy="reject"), str(YEAR), BUDGET)
    log.reviews[app(6)] = closed  # the waiting application is rejected because its year closed
    log.decide(6, ev.Decision.REJECTED, reasons=("fiscal_year_closed",))
    assert verify(log.events).ok
    log.receive(9)  # never reviewed
    log.reviews[app(9)] = closed
    log.decide(9, ev.Decision.REJECTED, reasons=("fiscal_year_closed",))
    report = verify(log.events)
    assert checks_failed(report) == ["decision-chain", "review-before-decision"]
    assert "caused from outside the application" in decision_chain(report)


# --- portal input is not ours to answer for -------------------------------------------------------


def test_a_malformed_submission_is_no_violation_but_a_malformed_event_of_ours_is() -> None:
    log = clean_log()
    command = ev.SubmitApplication(portal_id="portal-a", submission_id="s-1", application={})
    submission = Envelope.wrap(command, source="/portals/portal-a", subject="s-1")
    log.events.append(submission.model_copy(update={"data": {"portal_id": "portal-a"}}))
    assert verify(log.events).ok
    assert unreadable_records([]) == []
    (violation,) = unreadable_records(["egov.submissions.v1/0/7: garbage", "egov.reviews.v1/2/9: garbage"])
    assert (violation.check, violation.message) == ("payload", "not an envelope: egov.reviews.v1/2/9: garbage")


def test_a_payload_that_does_not_fit_and_a_reused_id_are_caught() -> None:
    log = clean_log()
    decided = first(log, 1, ev.ApplicationDecided)
    forged = decided.model_copy(update={"data": {**decided.data, "amount_cents": 1}})
    broken = log.add(ev.CategoryPaused(category="training"), "category:training", BUDGET)
    log.events[-1] = broken.model_copy(update={"data": {"category": 7}})
    report = verify([*log.events, forged])
    assert checks_failed(report) == ["duplicate-id", "payload"]


# --- signatures ---------------------------------------------------------------------------------


@pytest.fixture
def signer() -> Signer:
    return Signer(Ed25519PrivateKey.generate())


def keys_of(signer: Signer) -> dict[str, Ed25519PublicKey]:
    public = signer.private_key.public_key()
    return {key_id(public): public}


def test_signed_decisions_verify_with_the_published_key(signer: Signer) -> None:
    report = verify(clean_log(signer).events, public_keys=keys_of(signer))
    assert report.ok
    assert report.signatures_checked


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (lambda e: e.model_copy(update={"data": {**e.data, "amount_cents": 1_000_000}}), "invalid"),
        (lambda e: e.model_copy(update={"actor": "someone-else"}), "invalid"),
        (lambda e: e.model_copy(update={"signature": "AAAA"}), "invalid"),
        (lambda e: e.model_copy(update={"signingkeyid": "ed25519-0000000000000000"}), "unknown_key"),
        (lambda e: Envelope.model_validate(e.model_dump(exclude={"signature", "signingkeyid"})), "unsigned"),
    ],
)
def test_a_broken_signature_is_caught(signer: Signer, tamper: Callable[[Envelope], Envelope], expected: str) -> None:
    log = clean_log(signer)
    decided = first(log, 3, ev.ApplicationDecided)
    log.events[log.events.index(decided)] = tamper(decided)
    report = verify(log.events, public_keys=keys_of(signer))
    assert checks_failed(report) == ["signature"]
    (violation,) = report.violations
    assert (violation.message, violation.events) == (f"decision signature {expected}", (decided.id,))


def test_a_decision_signed_by_another_key_is_caught(signer: Signer) -> None:
    other = Signer(Ed25519PrivateKey.generate())
    report = verify(clean_log(other).events, public_keys=keys_of(signer))
    assert checks_failed(report) == ["signature"]
    assert len(report.violations) == 5  # every decision in the log


def test_an_event_on_a_topic_the_registry_does_not_put_it_on_is_not_believed() -> None:
    """A portal may write the submissions topic; an application.received it plants there is no receipt."""
    from audit.reader import LogRead, decode_into
    from schemas.topics import APPLICATIONS, SUBMISSIONS

    planted = first(clean_log(), 1, ev.ApplicationReceived)
    read = LogRead()
    decode_into(read, SUBMISSIONS, "egov.submissions.v1/0/5", planted.to_bytes())
    decode_into(read, APPLICATIONS, "egov.applications.v1/0/9", planted.to_bytes())
    assert [e.id for e in read.envelopes] == [planted.id], "believed only on its own topic"
    assert read.unreadable == [f"egov.submissions.v1/0/5: {planted.type} is not an event of egov.submissions.v1"]
    assert unreadable_records(read.unreadable) == [], "portal input on the submissions topic is not a violation"


# --- earmarks: places held during review ------------------------------------------


def earmark(log: Log, n: int, amount: int) -> Envelope:
    received = next(e for e in log.events if e.subject == app(n) and e.is_a(ev.ApplicationReceived))
    event = ev.FundsEarmarked(
        application_id=app(n), fiscal_year=YEAR, amount_cents=amount, place_at=log.received_at[app(n)]
    )
    return log.add(event, app(n), BUDGET, received)


def test_an_earmark_turned_reservation_holds_the_money_once() -> None:
    log = Log()
    log.open_year(100)
    log.receive(1)
    earmark(log, 1, 80)
    log.review(1, 80)
    reserved = ev.FundsReserved(
        application_id=app(1), fiscal_year=YEAR, amount_cents=80, ready_at=log.received_at[app(1)], from_earmark=True
    )
    log.add(reserved, app(1), BUDGET, log.reviews[app(1)])
    log.approve(1, 80)
    report = verify(log.events)
    assert report.ok, report.violations


def test_earmarks_beyond_the_pot_are_an_over_commitment() -> None:
    log = Log()
    log.open_year(100)
    for n in (1, 2):
        log.receive(n)
        earmark(log, n, 60)
    assert "over-commitment" in checks_failed(verify(log.events))


def test_an_earmark_for_a_later_place_while_an_earlier_one_waits_breaks_the_order() -> None:
    log = Log()
    log.open_year(100)
    log.receive(1, amount=80)
    log.receive(2, amount=80)
    told = ev.ApplicationWaitlisted(
        application_id=app(1),
        position=1,
        reason=ev.WaitlistReason.INSUFFICIENT_FUNDS,
        amount_cents=80,
        ready_at=log.received_at[app(1)],
        in_review=True,
    )
    log.add(told, app(1), BUDGET)
    earmark(log, 2, 80)
    report = verify(log.events)
    assert "line-order" in checks_failed(report)
    violation = next(v for v in report.violations if v.check == "line-order")
    assert violation.applications == (app(2), app(1))
    assert "earmarked" in violation.message


def test_an_application_with_attachments_takes_its_place_when_they_arrived() -> None:
    log = Log()
    log.open_year(100)
    log.receive(1)
    early = log.events[-1]
    with_documents = ev.ApplicationReceived.model_validate(
        {**early.data, "application": f.funding_application(f.amounts(80, year=YEAR)).model_dump(mode="json")}
    )
    log.events[-1] = early.model_copy(update={"data": with_documents.model_dump(mode="json")})
    log.receive(2, amount=80)
    log.review(2, 80)
    log.reserve(2, 80)  # 1 was received first, but is not complete yet: 2 goes first
    log.add(ev.ApplicationCompleted(application_id=app(1), completed_at=log.clock, attachments=2), app(1), INTAKE)
    log.review(1, 80)
    log.waitlist(1, 1, 80, ev.WaitlistReason.INSUFFICIENT_FUNDS)
    assert verify(log.events).violations == []
    log.adjust(100, 200)
    log.receive(3, amount=10)
    log.review(3, 10)
    log.reserve(3, 10)  # 1 is complete and waits before 3
    assert checks_failed(verify(log.events)) == ["line-order"]


def supplied_then_served(*, supplied: bool) -> list[Envelope]:
    """1 holds an earmark while a caseworker waits for its documents; 2 waits behind it. The documents
    arrive (or, with ``supplied`` False, the earmark is released without them), then 2 is served."""
    log = Log()
    log.open_year(100)
    log.receive(1, amount=60)
    log.receive(2, amount=60)
    log.review(1, 60, eligible=True)
    log.review(2, 60)
    earmark = ev.FundsEarmarked(application_id=app(1), fiscal_year=YEAR, amount_cents=60, place_at=log.clock)
    log.add(earmark, app(1), BUDGET)
    log.waitlist(2, 1, 60, ev.WaitlistReason.INSUFFICIENT_FUNDS)
    if supplied:
        documents = f.funding_application().attachments[:1]
        answer = ev.DocumentsSupplied(
            application_id=app(1), request_id="r-1", supplied_at=log.clock, documents=documents
        )
        log.add(answer, app(1), INTAKE)
    released = ev.FundsReleased(
        application_id=app(1), fiscal_year=YEAR, amount_cents=60, reason="documents_supplied", earmarked=True
    )
    log.add(released, app(1), BUDGET)
    log.waitlist(1, 1, 60, ev.WaitlistReason.INSUFFICIENT_FUNDS)  # told where it stands now
    log.reserve(2, 60)
    return log.events


def test_supplied_documents_give_a_new_place_behind_those_already_waiting() -> None:
    assert verify(supplied_then_served(supplied=True)).violations == []
    assert checks_failed(verify(supplied_then_served(supplied=False))) == ["line-order"]
