"""Review's handler decisions and its committed-metrics hook, without PostgreSQL or a broker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from runtime.outbox import Outgoing
from schemas.envelope import Envelope
from schemas.events import ApplicationReceived, ApplicationReviewed, DocumentsRequested, ReviewOutcome, ReviewProposed
from schemas.rules import RULES_DIR, load_rules
from schemas.topics import REVIEWS
from services.review import casework, metrics
from services.review.casework import Decision, Final
from services.review.domain import AUTOMATIC, application_reviewed
from services.review.handlers import SOURCE, AutomaticReview, CaseFlags, automatic_review
from tests.unit.factories import RECEIVED_AT, amounts, funding_application

pytestmark = pytest.mark.unit

V1 = load_rules(RULES_DIR / "egov-2024-v1.toml")
REVIEWED_AT = RECEIVED_AT + timedelta(seconds=3)
EARLY_START = {"planned_start": "2027-02-01", "reason": "Die Lizenzverträge laufen zum Jahresende aus."}
ABOVE_FOUR_EYES = amounts(25_000_000)


def received(**overrides: object) -> Envelope:
    payload = ApplicationReceived(
        application_id="TH-EGOV-2027-000001",
        portal_id="portal-a",
        received_at=RECEIVED_AT,
        category_open=True,
        application=funding_application(overrides),
    )
    return Envelope.wrap(payload, source="/egov/intake", subject=payload.application_id)


def decide(envelope: Envelope, competing: tuple[str, ...] = ()) -> AutomaticReview:
    return automatic_review(envelope, envelope.payload(ApplicationReceived), V1, competing, REVIEWED_AT)


def test_an_eligible_application_is_answered_and_opens_no_case() -> None:
    envelope = received()
    decided = decide(envelope)
    assert (decided.outcome, decided.case) == (ReviewOutcome.ELIGIBLE, None)
    event = decided.event
    assert (event.source, event.subject, event.causationid, event.actor) == (
        SOURCE,
        envelope.subject,
        envelope.id,
        AUTOMATIC,
    )
    assert event.time == REVIEWED_AT
    result = event.payload(ApplicationReviewed)
    assert (result.reviewer, result.rules_version, result.ready_at) == (AUTOMATIC, V1.version, REVIEWED_AT)
    assert result.findings == decided.findings


@pytest.mark.parametrize(
    ("overrides", "flags"),
    [
        (ABOVE_FOUR_EYES, CaseFlags(four_eyes=True, early_start=False)),
        ({"early_start": EARLY_START}, CaseFlags(four_eyes=False, early_start=True)),
        ({"early_start": EARLY_START, **ABOVE_FOUR_EYES}, CaseFlags(four_eyes=True, early_start=True)),
    ],
)
def test_a_case_for_a_person_says_why(overrides: dict[str, object], flags: CaseFlags) -> None:
    decided = decide(received(**overrides))
    assert (decided.outcome, decided.case) == (ReviewOutcome.NEEDS_MANUAL_REVIEW, flags)


def test_an_ineligible_application_opens_no_case_even_when_a_person_was_asked_for() -> None:
    decided = decide(received(**ABOVE_FOUR_EYES), competing=("TH-EGOV-2027-000009",))
    assert (decided.outcome, decided.case) == (ReviewOutcome.INELIGIBLE, None)
    assert [f.rule_id for f in decided.findings if not f.passed] == ["R08-no-double-funding"]


# --- metrics, counted from what a transaction staged ---------------------------------------------


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def counted_since() -> dict[str, float]:
    """The action counters before the test, to compare against (the registry is process-wide)."""
    return {a: sample("egov_caseworker_actions_total", action=a) for a in casework.Action}


def staged(event: ApplicationReviewed | ReviewProposed | DocumentsRequested, actor: str) -> Outgoing:
    envelope = Envelope.wrap(event, source=SOURCE, subject=event.application_id, actor=actor)
    return Outgoing(REVIEWS, event.application_id, envelope)


def caseworker_review(final: Final) -> ApplicationReviewed:
    receipt = received().payload(ApplicationReceived)
    findings = casework.caseworker_findings(final)
    return application_reviewed(receipt, final.decision.outcome, V1.version, findings, final.reviewer, REVIEWED_AT)


def test_the_committed_hook_counts_automatic_and_caseworker_reviews_and_each_action(
    counted_since: dict[str, float],
) -> None:
    automatic = decide(received()).event.payload(ApplicationReviewed)
    anna = Decision(ReviewOutcome.INELIGIBLE, "Kostenplan nicht plausibel.", "sb-anna")
    before = {
        r: sample("egov_reviews_total", outcome=o, reviewer=r)
        for r, o in (("automatic", "eligible"), ("caseworker", "ineligible"))
    }
    proposal = ReviewProposed(
        application_id=automatic.application_id,
        proposed_by="sb-anna",
        outcome=ReviewOutcome.INELIGIBLE,
        justification=anna.justification,
        rules_version=V1.version,
        amount_cents=automatic.amount_cents,
    )
    documents = DocumentsRequested(
        application_id=automatic.application_id, requested_by="sb-anna", documents=["cost_plan"], message_de="Bitte."
    )
    metrics.counted(
        [
            staged(automatic, AUTOMATIC),
            staged(proposal, "sb-anna"),
            staged(documents, "sb-anna"),
            staged(caseworker_review(Final(anna)), "sb-anna"),
            staged(caseworker_review(Final(anna, confirmed_by="sb-bernd")), "sb-bernd"),
        ]
    )
    assert sample("egov_reviews_total", outcome="eligible", reviewer="automatic") == before["automatic"] + 1
    assert sample("egov_reviews_total", outcome="ineligible", reviewer="caseworker") == before["caseworker"] + 2
    for action in casework.Action:
        assert sample("egov_caseworker_actions_total", action=action) == counted_since[action] + 1, action
