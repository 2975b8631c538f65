"""Review: every rule passes and fails on its own, and the outcome follows from the findings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import pytest

from schemas.application import ApplicantKind, FundingYear
from schemas.events import ReviewOutcome, RuleFinding
from schemas.rules import Rules
from services.review import domain as rv
from services.review.domain import RULES, ReviewCase, review
from tests.unit import factories as f

pytestmark = pytest.mark.unit

BASE_RULES = f.rules()
RULE_IDS = [
    "R01-applicant-in-thueringen",
    "R02-applicant-kind",
    "R03-category-known",
    "R04-financing",
    "R05-grant-limits",
    "R06-not-started",
    "R07-attachments",
    "R08-no-double-funding",
    "R09-four-eyes",
]
EARLY_START = {"planned_start": "2027-02-01", "reason": "Die Lizenzverträge laufen zum Jahresende aus."}
TRAINING = {
    "project.category": "schulung",
    "attachments": [
        {
            "file_name": "schulungsplan.pdf",
            "media_type": "application/pdf",
            "size_bytes": 1000,
            "kind": "training_plan",
            "digest": "sha256:" + "ab" * 32,
        }
    ],
}


def case(
    overrides: dict[str, Any] | None = None,
    *,
    received_at: datetime = f.RECEIVED_AT,
    competing: tuple[str, ...] = (),
) -> ReviewCase:
    return ReviewCase(f.funding_application(overrides), received_at, competing)


def only_kinds(*kinds: ApplicantKind) -> Rules:
    return BASE_RULES.model_copy(update={"allowed_applicant_kinds": list(kinds)})


# (rule, its id, a passing case, a failing case, the rules the failing case is judged by)
class RuleRow(NamedTuple):
    rule: Callable[[ReviewCase, Rules], RuleFinding]
    rule_id: str
    passing: ReviewCase
    failing: ReviewCase
    failing_rules: Rules


RULE_TABLE = [
    pytest.param(
        rv.applicant_in_state, RULE_IDS[0], case(), case({"applicant.ags": "15051000"}), BASE_RULES, id="R01-lead"
    ),
    pytest.param(
        rv.applicant_in_state, RULE_IDS[0], case(), case({"partners.0.ags": "09162000"}), BASE_RULES, id="R01-partner"
    ),
    pytest.param(
        rv.applicant_kind_allowed,
        RULE_IDS[1],
        case(),
        case(),
        only_kinds(ApplicantKind.GEMEINDE),  # the lead is a Stadt
        id="R02-lead-kind",
    ),
    pytest.param(
        rv.applicant_kind_allowed,
        RULE_IDS[1],
        case(),
        case(),
        only_kinds(ApplicantKind.STADT),  # the partner is a Gemeinde
        id="R02-partner-kind",
    ),
    pytest.param(rv.category_known, RULE_IDS[2], case(), case({"project.category": "raumfahrt"}), BASE_RULES, id="R03"),
    pytest.param(
        rv.financing_rule,
        RULE_IDS[3],
        case(f.amounts(9_600_000)),  # exactly 80 % of 12,000,000
        case({"project.requested_amount_cents": 9_600_001, "project.funding.0.amount_cents": 9_600_001}),
        BASE_RULES,
        id="R04-share",
    ),
    pytest.param(
        rv.financing_rule,
        RULE_IDS[3],
        case({**TRAINING, **f.amounts(1_000_000, rate_percent=100)}),  # exactly the fixed amount
        case({**TRAINING, **f.amounts(1_000_001, rate_percent=100)}),
        BASE_RULES,
        id="R04-fixed",
    ),
    pytest.param(
        rv.financing_rule, RULE_IDS[3], case(), case({"project.category": "raumfahrt"}), BASE_RULES, id="R04-none"
    ),
    pytest.param(
        rv.grant_within_limits,
        RULE_IDS[4],
        case(f.amounts(500_000)),
        case(f.amounts(499_999)),
        BASE_RULES,
        id="R05-min",
    ),
    pytest.param(
        rv.grant_within_limits,
        RULE_IDS[4],
        case(f.amounts(50_000_000)),
        case(f.amounts(50_000_001)),
        BASE_RULES,
        id="R05-max",
    ),
    pytest.param(
        rv.project_not_started,
        RULE_IDS[5],
        case({"project.start_date": "2027-01-16"}, received_at=f.RECEIVED_AT),
        case({"project.start_date": "2027-01-15"}, received_at=f.RECEIVED_AT),  # started on the day of receipt
        BASE_RULES,
        id="R06-start-date",
    ),
    pytest.param(
        rv.project_not_started,
        RULE_IDS[5],
        case(),
        case({"declarations.project_not_started": False}),
        BASE_RULES,
        id="R06-declared-started",
    ),
    pytest.param(
        rv.required_attachments,
        RULE_IDS[6],
        case(),
        case({"attachments": f.DELETE}),
        BASE_RULES,
        id="R07-none",
    ),
    pytest.param(
        rv.required_attachments,
        RULE_IDS[6],
        case(),
        case({"attachments.1.kind": "other"}),  # project_description missing
        BASE_RULES,
        id="R07-one-missing",
    ),
    pytest.param(
        rv.no_double_funding,
        RULE_IDS[7],
        case(),
        case(competing=("TH-EGOV-2026-000042",)),
        BASE_RULES,
        id="R08",
    ),
]


@pytest.mark.parametrize(("rule", "rule_id", "passing", "failing", "failing_rules"), RULE_TABLE)
def test_rule_passes_and_fails(
    rule: Callable[[ReviewCase, Rules], RuleFinding],
    rule_id: str,
    passing: ReviewCase,
    failing: ReviewCase,
    failing_rules: Rules,
) -> None:
    ok, bad = rule(passing, BASE_RULES), rule(failing, failing_rules)
    assert (ok.rule_id, ok.passed, ok.needs_person) == (rule_id, True, False)
    assert (bad.rule_id, bad.passed, bad.needs_person) == (rule_id, False, False)
    for finding in (ok, bad):
        assert finding.message_de.strip()
        assert finding.message_en.strip()
        assert finding.message_de != finding.message_en
    assert ok.message_de != bad.message_de
    assert ok.message_en != bad.message_en


def test_table_covers_every_rule() -> None:
    covered = {RuleRow._make(p.values).rule for p in RULE_TABLE}
    # R09 never fails; it asks for a person instead (tested below).
    assert covered | {rv.four_eyes} == set(RULES)
    assert [r(case(), BASE_RULES).rule_id for r in RULES] == RULE_IDS


def test_failing_messages_name_the_problem() -> None:
    r02 = rv.applicant_kind_allowed(case(), only_kinds(ApplicantKind.GEMEINDE))
    assert "stadt" in r02.message_de
    assert "stadt" in r02.message_en
    r04 = rv.financing_rule(case({"project.requested_amount_cents": 9_600_001}), BASE_RULES)
    assert "9600000" in r04.message_de
    assert "80 %" in r04.message_en
    r07 = rv.required_attachments(case({"attachments": []}), BASE_RULES)
    assert "cost_plan" in r07.message_de
    assert "project_description" in r07.message_en
    r08 = rv.no_double_funding(case(competing=("TH-EGOV-2026-000042", "TH-EGOV-2026-000043")), BASE_RULES)
    assert "TH-EGOV-2026-000042" in r08.message_de
    assert "TH-EGOV-2026-000043" in r08.message_en


def test_financing_share_rounds_down_to_whole_cents() -> None:
    # 80 % of 1,000,001 cents is 800,000.8 cents: at most 800,000 may be requested.
    overrides = {"project.eligible_cost_cents": 1_000_001, "project.total_cost_cents": 1_000_001}
    assert rv.financing_rule(case({**overrides, **_requested(800_000)}), BASE_RULES).passed
    assert not rv.financing_rule(case({**overrides, **_requested(800_001)}), BASE_RULES).passed


def _requested(cents: int) -> dict[str, Any]:
    return {"project.requested_amount_cents": cents, "project.funding.0.amount_cents": cents}


@pytest.mark.parametrize(
    ("requested", "needs_person"),
    [(20_000_000, False), (20_000_001, True), (50_000_000, True)],
    ids=["at-threshold", "just-above", "maximum"],
)
def test_four_eyes_asks_for_a_person_above_the_threshold(requested: int, needs_person: bool) -> None:
    finding = rv.four_eyes(case(f.amounts(requested)), BASE_RULES)
    below = rv.four_eyes(case(), BASE_RULES)
    assert finding.rule_id == "R09-four-eyes"
    assert finding.passed
    assert finding.needs_person is needs_person
    assert not below.needs_person
    if needs_person:
        assert finding.message_de != below.message_de
        assert finding.message_en != below.message_en
        assert finding.message_de.strip()
        assert finding.message_en.strip()


def test_early_start_request_passes_but_asks_for_a_person_even_when_started() -> None:
    started = case({"early_start": EARLY_START, "project.start_date": "2027-01-01"})
    finding = rv.project_not_started(started, BASE_RULES)
    plain = rv.project_not_started(case(), BASE_RULES)
    assert (finding.passed, finding.needs_person) == (True, True)
    assert finding.message_de != plain.message_de
    assert finding.message_en != plain.message_en


# --- outcome -------------------------------------------------------------------------


def test_clean_application_is_eligible_with_every_rule_recorded() -> None:
    outcome, findings = review(case(), BASE_RULES)
    assert outcome is ReviewOutcome.ELIGIBLE
    assert [x.rule_id for x in findings] == RULE_IDS
    assert all(x.passed and not x.needs_person for x in findings)


@pytest.mark.parametrize(
    ("review_case", "flagged"),
    [
        (case(f.amounts(25_000_000)), {"R09-four-eyes"}),
        (case({"early_start": EARLY_START}), {"R06-not-started"}),
        (case({"early_start": EARLY_START, **f.amounts(25_000_000)}), {"R06-not-started", "R09-four-eyes"}),
    ],
    ids=["four-eyes", "early-start", "both"],
)
def test_findings_that_need_a_person_send_it_to_manual_review(review_case: ReviewCase, flagged: set[str]) -> None:
    outcome, findings = review(review_case, BASE_RULES)
    assert outcome is ReviewOutcome.NEEDS_MANUAL_REVIEW
    assert all(x.passed for x in findings)
    assert {x.rule_id for x in findings if x.needs_person} == flagged


def test_ineligible_names_every_failed_rule() -> None:
    bad = case(
        {
            "partners.0.ags": "09162000",  # R01
            "project.category": "raumfahrt",  # R03, and with it R04
            **_requested(100),  # R05
            "declarations.project_not_started": False,  # R06
        },
        competing=("TH-EGOV-2026-000001",),  # R08
    )
    outcome, findings = review(bad, only_kinds(ApplicantKind.STADT))  # R02: the partner is a Gemeinde
    assert outcome is ReviewOutcome.INELIGIBLE
    assert [x.rule_id for x in findings] == RULE_IDS
    failed = {x.rule_id for x in findings if not x.passed}
    assert failed == {
        "R01-applicant-in-thueringen",
        "R02-applicant-kind",
        "R03-category-known",
        "R04-financing",
        "R05-grant-limits",
        "R06-not-started",
        "R08-no-double-funding",
    }


@pytest.mark.parametrize("rule_id", RULE_IDS[:8])
def test_a_single_failed_rule_makes_it_ineligible_even_with_a_person_needed(rule_id: str) -> None:
    first = next(r for r in map(RuleRow._make, (p.values for p in RULE_TABLE)) if r.rule_id == rule_id)
    failing_case, failing_rules = first.failing, first.failing_rules
    # Add a four-eyes amount on top: a failure still wins over "needs a person".
    app = failing_case.application
    if rule_id not in {"R04-financing", "R05-grant-limits"}:  # their failure depends on the amount itself
        money = {
            "requested_amount_cents": 25_000_000,
            "eligible_cost_cents": 31_250_000,
            "total_cost_cents": 31_250_000,
            "funding": [FundingYear(fiscal_year=f.FUTURE_YEAR, amount_cents=25_000_000)],
        }
        app = app.model_copy(update={"project": app.project.model_copy(update=money)})
    outcome, findings = review(
        ReviewCase(app, failing_case.received_at, failing_case.competing_applications), failing_rules
    )
    assert outcome is ReviewOutcome.INELIGIBLE
    failed = {x.rule_id for x in findings if not x.passed}
    assert rule_id in failed
    if rule_id not in {"R03-category-known"}:  # an unknown category also has no financing rule
        assert failed == {rule_id}
    if app is not failing_case.application:
        assert any(x.needs_person for x in findings)


def test_receipt_time_decides_whether_the_project_had_started() -> None:
    app = {"project.start_date": "2027-03-01"}
    before = datetime(2027, 2, 28, 12, 0, tzinfo=UTC)
    assert review(case(app, received_at=before), BASE_RULES)[0] is ReviewOutcome.ELIGIBLE
    outcome, findings = review(case(app, received_at=before + timedelta(days=2)), BASE_RULES)
    assert outcome is ReviewOutcome.INELIGIBLE
    assert [x.rule_id for x in findings if not x.passed] == ["R06-not-started"]
