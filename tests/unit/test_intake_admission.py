"""Intake's admission rule and the Kafka ingress's decision, without a broker or a database.

Both edges ask the same rule: the HTTP API (``submission.screen``, then the claim's quota answer)
and the Kafka ingress (``ingress.decide`` on the facts its handler loaded).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY

from runtime.outbox import Outgoing
from runtime.problems import Problem
from schemas.application import FundingApplication
from schemas.envelope import Envelope
from schemas.events import ApplicationReceived, ApplicationRejected, SubmitApplication
from schemas.topics import APPLICATIONS
from services.intake.admission import Check, FullYear, NotAdmitted, admit, received
from services.intake.domain import body_digest, validate_application
from services.intake.ingress import ID_REUSED, Admit, Duplicate, Refuse, SubmissionFacts, Unproven, decide
from services.intake.metrics import KAFKA_INGRESS_COMMITTED
from services.intake.policy import PortalAccess, quota_problem
from services.intake.submission import refusal_problem, screen
from tests.unit import factories as f

pytestmark = pytest.mark.unit

RULES = f.rules()
CAP = 3
REFUSED = "egov_intake_submissions_refused_total"
RECEIVED = "egov_applications_received_total"
LEAD = f.LEAD_AGS  # 16051000
ANY_APPLICANT = PortalAccess("portal-a", rate_per_second=10, burst=10)
CONFINED = PortalAccess("portal-b", rate_per_second=10, burst=10, ags_prefixes=("16066",))

FULL = FullYear(f.FUTURE_YEAR, CAP)
INVALID = {"project.requested_amount_cents": f.ELIGIBLE + 1, "project.title": ""}
UNSTORABLE = {"project.title": "E-Akte\x00"}


def facts(
    body: dict[str, Any], *, scope: tuple[str, ...] | None = None, full_year: FullYear | None = None
) -> SubmissionFacts:
    """The facts of a first-time submission, as the handler loads them."""
    command = SubmitApplication(portal_id="portal-a", submission_id="sub-1", application=body)
    return SubmissionFacts(
        command=command,
        scope=scope,
        digest=body_digest(body),
        earlier_digest=None,
        parsed=validate_application(body, RULES),
        full_year=full_year,
    )


def http_problem(body: dict[str, Any], portal: PortalAccess = ANY_APPLICANT) -> Problem:
    with pytest.raises(Problem) as refused:
        screen(json.dumps(body).encode(), RULES, portal)
    return refused.value


def codes(problems: Any) -> list[tuple[str, str]]:
    return [(p.code, p.pointer) for p in problems]


# --- the admission rule -------------------------------------------------------------------------


def test_a_valid_application_in_scope_and_within_quota_is_admitted() -> None:
    admitted = admit(validate_application(f.application(), RULES), None, None)
    assert admitted == FundingApplication.model_validate(f.application())


@pytest.mark.parametrize(
    ("overrides", "scope", "full_year", "check"),
    [
        (INVALID, None, None, Check.CONTRACT),
        (UNSTORABLE, None, None, Check.STORABLE_TEXT),
        ({}, ("16066",), None, Check.SCOPE),
        ({}, None, FULL, Check.QUOTA),
    ],
)
def test_each_check_refuses_on_its_own(
    overrides: dict[str, Any], scope: tuple[str, ...] | None, full_year: FullYear | None, check: Check
) -> None:
    refused = admit(validate_application(f.application(overrides), RULES), scope, full_year)
    assert isinstance(refused, NotAdmitted)
    assert refused.check is check
    assert refused.problems


def test_the_checks_run_in_order_and_the_first_failing_one_answers() -> None:
    everything_wrong = validate_application(f.application(INVALID), RULES)
    assert isinstance(everything_wrong, list)
    assert admit(everything_wrong, ("16066",), FULL) == NotAdmitted(Check.CONTRACT, tuple(everything_wrong))
    unstorable = admit(validate_application(f.application(UNSTORABLE), RULES), ("16066",), FULL)
    assert isinstance(unstorable, NotAdmitted)
    assert unstorable.check is Check.STORABLE_TEXT
    out_of_scope = admit(validate_application(f.application(), RULES), ("16066",), FULL)
    assert isinstance(out_of_scope, NotAdmitted)
    assert out_of_scope.check is Check.SCOPE


def test_the_quota_problem_names_the_full_year_and_the_cap() -> None:
    refused = admit(validate_application(f.application(), RULES), None, FullYear(2091, CAP))
    assert refused == NotAdmitted(Check.QUOTA, (quota_problem(2091, CAP),))


# --- the HTTP answers ---------------------------------------------------------------------------


def test_the_http_path_answers_each_check_with_its_status_and_code() -> None:
    invalid = http_problem(f.application(INVALID))
    found = f"{len(invalid.errors)} problem(s) found"
    assert (invalid.status, invalid.code, invalid.detail) == (422, "application.invalid", found)
    unstorable = http_problem(f.application(UNSTORABLE))
    assert (unstorable.status, unstorable.code, unstorable.detail) == (422, "application.invalid", None)
    out_of_scope = http_problem(f.application(), CONFINED)
    assert (out_of_scope.status, out_of_scope.code) == (403, "auth.applicant_not_permitted")
    over_quota = refusal_problem(NotAdmitted(Check.QUOTA, (quota_problem(2091, CAP),)))
    assert (over_quota.status, over_quota.code) == (409, "applicant.open_applications_limit")
    assert over_quota.detail == quota_problem(2091, CAP).detail


def test_the_http_path_lets_a_valid_application_through_to_the_claim() -> None:
    assert screen(json.dumps(f.application()).encode(), RULES, ANY_APPLICANT) == f.funding_application()


@pytest.mark.parametrize(
    ("overrides", "portal"), [(INVALID, ANY_APPLICANT), (UNSTORABLE, ANY_APPLICANT), ({}, CONFINED)]
)
def test_http_and_kafka_name_the_same_problems_for_the_same_application(
    overrides: dict[str, Any], portal: PortalAccess
) -> None:
    body = f.application(overrides)
    over_http = http_problem(body, portal)
    over_kafka = decide(facts(body, scope=portal.ags_prefixes))
    assert isinstance(over_kafka, Refuse)
    assert over_http.errors == list(over_kafka.problems)
    assert codes(over_kafka.problems)


# --- the Kafka ingress's decision ---------------------------------------------------------------


def test_a_record_not_proven_by_its_portal_is_unproven() -> None:
    assert decide(None) == Unproven()


def test_a_new_valid_submission_is_admitted() -> None:
    assert decide(facts(f.application())) == Admit(f.funding_application())


def test_an_invalid_submission_is_refused_with_every_problem() -> None:
    every_problem = validate_application(f.application(INVALID), RULES)
    assert isinstance(every_problem, list)
    assert len(every_problem) > 1
    assert decide(facts(f.application(INVALID))) == Refuse(tuple(every_problem))


def test_a_submission_over_the_quota_is_refused() -> None:
    assert decide(facts(f.application(), full_year=FULL)) == Refuse((quota_problem(f.FUTURE_YEAR, CAP),))


def test_the_same_submission_again_is_a_duplicate_whatever_the_key_order() -> None:
    body = f.application()
    reordered = dict(reversed(list(body.items())))
    command = SubmitApplication(portal_id="portal-a", submission_id="sub-1", application=reordered)
    seen = SubmissionFacts(command, None, body_digest(reordered), earlier_digest=body_digest(body))
    assert decide(seen) == Duplicate()


def test_a_submission_id_reused_for_another_body_is_refused() -> None:
    body = f.application({"project.title": "another project"})
    command = SubmitApplication(portal_id="portal-a", submission_id="sub-1", application=body)
    reused = SubmissionFacts(command, None, body_digest(body), earlier_digest=body_digest(f.application()))
    assert decide(reused) == Refuse((ID_REUSED,))


# --- the one event factory ----------------------------------------------------------------------


def test_the_received_event_carries_the_submission_id_only_when_there_is_one() -> None:
    at = datetime(2027, 1, 15, 9, 30, tzinfo=UTC)
    common: dict[str, Any] = {
        "application_id": "TH-EGOV-2027-000001",
        "portal_id": "p",
        "received_at": at,
        "paused_by_admin": False,
    }
    over_http = received(f.funding_application(), **common, rules=RULES, submission_id=None)
    over_kafka = received(f.funding_application(), **common, rules=RULES, submission_id="sub-1")
    assert (over_http.submission_id, over_kafka.submission_id) == (None, "sub-1")
    assert over_http.category_open is over_kafka.category_open is True
    assert over_http.model_dump(exclude={"submission_id"}) == over_kafka.model_dump(exclude={"submission_id"})


@pytest.mark.parametrize(
    ("category", "paused_by_admin", "open_at_receipt"),
    [
        ("dms_eservices", False, True),
        ("dms_eservices", True, False),  # open in the rules file, paused through the budget admin API
        ("e_akte", False, False),  # paused in the rules file
        ("e_akte", True, False),
    ],
)
def test_a_category_is_open_at_receipt_only_if_neither_the_rules_nor_an_administrator_paused_it(
    category: str, paused_by_admin: bool, open_at_receipt: bool
) -> None:
    application = f.funding_application().model_copy(
        update={"project": f.funding_application().project.model_copy(update={"category": category})}
    )
    event = received(
        application,
        application_id="TH-EGOV-2027-000003",
        portal_id="p",
        received_at=f.RECEIVED_AT,
        rules=RULES,
        submission_id=None,
        paused_by_admin=paused_by_admin,
    )
    assert event.category_open is open_at_receipt


# --- metrics, from what the ingress committed ---------------------------------------------------


def test_the_ingress_hook_counts_committed_rejections_under_kafka_and_receipts_by_category() -> None:
    def refused(code: str) -> float:
        return REGISTRY.get_sample_value(REFUSED, {"channel": "kafka", "code": code}) or 0.0

    def received_in(category: str) -> float:
        return REGISTRY.get_sample_value(RECEIVED, {"category": category}) or 0.0

    app = f.funding_application()
    event = received(
        app,
        application_id="TH-EGOV-2027-000002",
        portal_id="p",
        received_at=f.RECEIVED_AT,
        rules=RULES,
        submission_id="s",
        paused_by_admin=False,
    )
    one = ApplicationRejected(portal_id="p", submission_id="s", errors=[ID_REUSED])
    several = ApplicationRejected(portal_id="p", submission_id="s", errors=[ID_REUSED, quota_problem(2091, CAP)])
    before = refused(ID_REUSED.code), refused("application.invalid"), received_in(app.project.category)
    KAFKA_INGRESS_COMMITTED([outgoing(one), outgoing(several), outgoing(event)])
    after = refused(ID_REUSED.code), refused("application.invalid"), received_in(app.project.category)
    assert [a - b for a, b in zip(after, before, strict=True)] == [1.0, 1.0, 1.0]


def outgoing(event: ApplicationRejected | ApplicationReceived) -> Outgoing:
    return Outgoing(APPLICATIONS, "key", Envelope.wrap(event, source="/test", subject="key"))
