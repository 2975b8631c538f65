"""The caseworker's rules, the "what if" replay and the choice of rules version, without a broker."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from runtime.problems import REFUSAL_STATUS
from runtime.refusals import Refused
from schemas.events import ApplicationReceived, ReviewOutcome
from schemas.rules import RULES_DIR, RulesFileError, load_rules
from services.review import casework
from services.review.app import active_rules
from services.review.casework import Case, CaseStatus, Decision, Final
from services.review.domain import ReviewCase, review
from services.review.rereview import Measure, Recorded, replay
from tests.unit.factories import RECEIVED_AT, amounts, funding_application

pytestmark = pytest.mark.unit

V1 = load_rules(RULES_DIR / "egov-2024-v1.toml")
V2 = load_rules(RULES_DIR / "egov-2025-v2.toml")
ANNA = Decision(ReviewOutcome.ELIGIBLE, "Begründung liegt vor.", "sb-anna")
BERND_DISAGREES = Decision(ReviewOutcome.INELIGIBLE, "Kostenplan nicht plausibel.", "sb-bernd")


def case(status: CaseStatus = CaseStatus.OPEN, *, four_eyes: bool = False, early_start: bool = False) -> Case:
    proposal = ANNA if status is CaseStatus.PROPOSED else None
    return Case("TH-EGOV-2027-000001", status, four_eyes, early_start, proposal)


@pytest.mark.parametrize(
    ("the_case", "decision", "expected"),
    [
        (case(), ANNA, Final(ANNA)),
        (case(CaseStatus.WAITING_DOCUMENTS), ANNA, Final(ANNA)),
        (case(four_eyes=True), ANNA, ANNA),
        (case(CaseStatus.PROPOSED, four_eyes=True), BERND_DISAGREES, BERND_DISAGREES),
        (case(CaseStatus.DECIDED), ANNA, "case.already_decided"),
        (case(early_start=True), ANNA, "case.early_start_undecided"),
        (case(), Decision(ReviewOutcome.ELIGIBLE, "Ja.", "sb-anna", True), "case.early_start_not_requested"),
        (case(), Decision(ReviewOutcome.NEEDS_MANUAL_REVIEW, "Hm.", "sb-anna"), "case.outcome_invalid"),
    ],
)
def test_decide(the_case: Case, decision: Decision, expected: object) -> None:
    if isinstance(expected, str):
        with pytest.raises(Refused) as refused:
            casework.decide(the_case, decision)
        assert refused.value.code == expected
    else:  # a decision that comes back unchanged is a proposal; a new one on a proposed case replaces it
        assert casework.decide(the_case, decision) == expected


@pytest.mark.parametrize(
    ("the_case", "caseworker", "expected"),
    [
        (case(CaseStatus.PROPOSED, four_eyes=True), "sb-bernd", "sb-bernd"),
        (case(CaseStatus.PROPOSED, four_eyes=True), "sb-anna", "review.four_eyes_same_caseworker"),
        (case(CaseStatus.OPEN, four_eyes=True), "sb-bernd", "case.no_proposal"),
        (case(CaseStatus.DECIDED, four_eyes=True), "sb-bernd", "case.already_decided"),
    ],
)
def test_confirm(the_case: Case, caseworker: str, expected: str) -> None:
    if expected.startswith("sb-"):
        final = casework.confirm(the_case, caseworker)
        assert (final.reviewer, final.decision) == (expected, ANNA)
        return
    with pytest.raises(Refused) as refused:
        casework.confirm(the_case, caseworker)
    assert refused.value.code == expected
    assert REFUSAL_STATUS[refused.value.kind] == (403 if expected.startswith("review.") else 409)


def test_caseworker_findings_carry_the_justification_and_each_decision() -> None:
    decision = Decision(ReviewOutcome.INELIGIBLE, "Vertrag vor Antrag unterschrieben.", "sb-anna", False)
    findings = casework.caseworker_findings(Final(decision, confirmed_by="sb-bernd"))
    assert [(f.rule_id, f.passed) for f in findings] == [
        ("C01-caseworker-decision", False),
        ("C02-early-start", True),
        ("C03-four-eyes-confirmed", True),
    ]
    assert "Vertrag vor Antrag unterschrieben." in findings[0].message_de
    assert "nicht zugelassen" in findings[1].message_de


def test_a_document_request_is_german_and_refused_once_decided() -> None:
    text = casework.request_documents(case(), ["cost_plan"], "Bitte unterschrieben.")
    assert text.startswith("Bitte reichen Sie folgende Unterlagen nach: cost_plan.")
    with pytest.raises(Refused):
        casework.request_documents(case(CaseStatus.DECIDED), ["cost_plan"], None)


def received(app_id: str, minutes: int, ags: str, **overrides: object) -> ApplicationReceived:
    return ApplicationReceived(
        application_id=app_id,
        portal_id="portal-a",
        received_at=RECEIVED_AT + timedelta(minutes=minutes),
        category_open=True,
        application=funding_application({"applicant.ags": ags, "partners": [], **overrides}),
    )


def recorded(item: ApplicationReceived) -> Recorded:
    outcome, findings = review(ReviewCase(item.application, item.received_at), V1)
    return Recorded(item, V1.version, outcome, findings)


def test_replay_under_another_version_shows_what_would_change() -> None:
    at_80 = received("TH-EGOV-2027-000001", 0, "16051000")
    at_70 = received("TH-EGOV-2027-000002", 1, "16052000", **amounts(7_000_000, rate_percent=70))
    results = replay([recorded(at_80), recorded(at_70)], V2, [])
    assert [(r.changed, r.outcome) for r in results] == [
        (True, ReviewOutcome.INELIGIBLE),
        (False, ReviewOutcome.ELIGIBLE),
    ]
    assert results[0].differing_rules == ["R04-financing"]


def test_replay_keeps_its_own_open_measures_for_double_funding() -> None:
    first = received("TH-EGOV-2027-000001", 0, "16051000")
    second = received("TH-EGOV-2027-000002", 1, "16051000")
    results = replay([recorded(second), recorded(first)], V1, [])
    assert [r.outcome for r in results] == [ReviewOutcome.ELIGIBLE, ReviewOutcome.INELIGIBLE], "receipt order"
    seeded = Measure("TH-EGOV-2026-000009", frozenset({"16051000"}), "dms_eservices", frozenset({2090}))
    assert replay([recorded(first)], V1, [seeded])[0].differing_rules == ["R08-no-double-funding"]


def test_a_rules_file_not_yet_in_force_is_refused(tmp_path: Path) -> None:
    assert active_rules(RULES_DIR / "egov-2025-v2.toml", date(2025, 7, 1)).version == "egov-2025-v2"
    with pytest.raises(RulesFileError, match="valid only from 2025-07-01"):
        active_rules(RULES_DIR / "egov-2025-v2.toml", date(2025, 6, 30))
    broken = tmp_path / "broken.toml"
    broken.write_text(
        (RULES_DIR / "egov-2025-v2.toml").read_text().replace("max_rate_percent = 70", "max_rate_percent = 170")
    )
    with pytest.raises(RulesFileError, match="max_rate_percent"):
        active_rules(broken, datetime.now(UTC).date())
