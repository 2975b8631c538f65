"""Intake validation: the contract's field checks plus intake's cross-field checks, every error at once."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.application import ApplicantKind, FundingApplication
from schemas.events import ApplicationReceived, ProblemItem
from services.intake.domain import STATUS_RANK, application_id, body_digest, pointer, validate_application
from tests.unit import factories as f

pytestmark = pytest.mark.unit

RULES = f.rules()
CATEGORY_IDS = [c.id for c in RULES.categories]
PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def problems_of(body: Any) -> list[tuple[str, str]]:
    result = validate_application(body, RULES)
    assert isinstance(result, list), f"expected problems, the application was accepted: {result!r}"
    assert result, "a rejection must name at least one problem"
    assert all(isinstance(p, ProblemItem) and p.detail for p in result)
    return [(p.code, p.pointer) for p in result]


# --- accepted ----------------------------------------------------------------


def test_a_member_named_twice_is_one_clear_problem_not_a_silent_choice() -> None:
    body = json.dumps(f.application())
    problems = validate_application(body[:-1] + ', "partners": []}', f.rules())
    assert isinstance(problems, list)
    assert [(p.code, p.pointer, p.detail) for p in problems] == [
        ("body.duplicate_key", "/partners", "the member 'partners' appears twice in one object")
    ]


def test_the_digest_of_a_body_ignores_member_order() -> None:
    application = f.application()
    assert body_digest(application) == body_digest(dict(reversed(list(application.items()))))
    assert body_digest(application) != body_digest({**application, "partners": [{"ags": "16051000"}]})


def test_demo_sample_is_accepted_unchanged() -> None:
    raw = f.SAMPLE_PATH.read_bytes()
    result = validate_application(raw, RULES)
    assert isinstance(result, FundingApplication)
    assert result.applicant.ags == "16051000"
    assert result.project.requested_amount_cents == 9_600_000


@pytest.mark.parametrize(
    "encode", [lambda d: d, json.dumps, lambda d: json.dumps(d).encode()], ids=["dict", "str", "bytes"]
)
def test_factory_application_is_accepted_in_every_body_form(encode: Any) -> None:
    result = validate_application(encode(f.application()), RULES)
    assert isinstance(result, FundingApplication)
    assert result.project.start_date == f.START
    assert [(y.fiscal_year, y.amount_cents) for y in result.project.funding] == [(f.FUTURE_YEAR, f.REQUESTED)]


def test_optional_parts_may_be_omitted() -> None:
    result = validate_application(
        f.application({"partners": f.DELETE, "attachments": f.DELETE, "contact.phone": f.DELETE}), RULES
    )
    assert isinstance(result, FundingApplication)
    assert result.partners == []
    assert result.attachments == []
    assert result.contact.phone is None


def test_start_and_end_on_the_same_day_is_accepted() -> None:
    assert isinstance(
        validate_application(f.application({"project.end_date": f.START.isoformat()}), RULES), FundingApplication
    )


# --- every cross-field check: exact code and pointer -----------------------------------

CROSS_FIELD_CASES = [
    pytest.param(
        {
            "project.requested_amount_cents": f.ELIGIBLE + 1,
            "project.funding.0.amount_cents": f.ELIGIBLE + 1,
        },
        ("amount.requested_exceeds_eligible", "/project/requested_amount_cents"),
        id="requested-exceeds-eligible",
    ),
    pytest.param(
        {"project.eligible_cost_cents": f.TOTAL + 1},
        ("amount.eligible_exceeds_total", "/project/eligible_cost_cents"),
        id="eligible-exceeds-total",
    ),
    pytest.param(
        {"project.end_date": (f.START - timedelta(days=1)).isoformat()},
        ("dates.end_before_start", "/project/end_date"),
        id="end-before-start",
    ),
    pytest.param(
        {"project.funding.0.amount_cents": f.REQUESTED - 1},
        ("funding.sum_mismatch", "/project/funding"),
        id="funding-sum-short",
    ),
    pytest.param(
        {"project.funding.1": {"fiscal_year": f.FUTURE_YEAR + 1, "amount_cents": 1}},
        ("funding.sum_mismatch", "/project/funding"),
        id="funding-sum-over",
    ),
    pytest.param(
        {
            "project.funding": [
                {"fiscal_year": f.FUTURE_YEAR, "amount_cents": f.REQUESTED // 2},
                {"fiscal_year": f.FUTURE_YEAR, "amount_cents": f.REQUESTED // 2},
            ]
        },
        ("funding.duplicate_year", "/project/funding"),
        id="duplicate-fiscal-year",
    ),
    pytest.param(
        {"applicant.ags": "15051000"},
        ("applicant.not_in_thueringen", "/applicant/ags"),
        id="lead-outside-thueringen",
    ),
    pytest.param(
        {"partners.0.ags": f.LEAD_AGS},
        ("partners.duplicates_lead", "/partners/0/ags"),
        id="partner-equals-lead",
    ),
    pytest.param(
        {"partners.1": {"kind": "gemeinde", "name": "Gemeinde Beispieldorf (nochmal)", "ags": f.PARTNER_AGS}},
        ("partners.duplicate", "/partners/1/ags"),
        id="duplicate-partner",
    ),
    pytest.param(
        {"partners.0.ags": "09162000"},
        ("partner.not_in_thueringen", "/partners/0/ags"),
        id="partner-outside-thueringen",
    ),
    pytest.param(
        {"project.category": "raumfahrt"},
        ("category.unknown", "/project/category"),
        id="unknown-category",
    ),
    *(
        pytest.param(
            {f"declarations.{name}": False},
            ("declarations.not_confirmed", f"/declarations/{name}"),
            id=f"declaration-{name}-false",
        )
        for name in ("information_complete_and_true", "no_double_funding", "project_not_started")
    ),
]


@pytest.mark.parametrize(("overrides", "expected"), CROSS_FIELD_CASES)
def test_each_cross_field_check_reports_exactly_its_code_and_pointer(
    overrides: dict[str, Any], expected: tuple[str, str]
) -> None:
    assert problems_of(f.application(overrides)) == [expected]


def test_unknown_category_detail_lists_the_known_ones() -> None:
    result = validate_application(f.application({"project.category": "raumfahrt"}), RULES)
    assert isinstance(result, list)
    assert "dms_eservices" in result[0].detail
    assert "schulung" in result[0].detail


def test_every_error_is_reported_at_once() -> None:
    body = f.application(
        {
            "applicant.ags": "15051000",
            "applicant.kind": "dorf",
            "contact.email": "keine-adresse",
            "project.category": "raumfahrt",
            "project.eligible_cost_cents": f.TOTAL + 1,
            "project.end_date": "2000-01-01",
            "project.funding.0.amount_cents": 1,
            "project.total_cost_cents": 12.5,
            "partners.0.ags": "15051000",  # the same as the (outside) lead
            "declarations.no_double_funding": False,
            "attachments.0.digest": "md5:abc",
            "contact.name": f.DELETE,
        }
    )
    found = set(problems_of(body))
    expected = {
        ("applicant.not_in_thueringen", "/applicant/ags"),
        ("field.not_allowed", "/applicant/kind"),
        ("field.invalid_format", "/contact/email"),
        ("field.required", "/contact/name"),
        ("category.unknown", "/project/category"),
        ("dates.end_before_start", "/project/end_date"),
        ("funding.sum_mismatch", "/project/funding"),
        ("field.not_an_integer", "/project/total_cost_cents"),
        ("partners.duplicates_lead", "/partners/0/ags"),
        ("declarations.not_confirmed", "/declarations/no_double_funding"),
        ("field.invalid_format", "/attachments/0/digest"),
    }
    assert expected <= found, f"missing: {expected - found}"
    # total_cost_cents is not an integer, so "eligible exceeds total" cannot be judged and is not claimed.
    assert ("amount.eligible_exceeds_total", "/project/eligible_cost_cents") not in found


def test_the_same_problem_is_reported_once() -> None:
    found = problems_of(f.application({"applicant.ags": "15051000"}))
    assert len(found) == len(set(found))


# --- money is integer cents, never anything else ------------------------------------

MONEY_FIELDS = [
    "project.total_cost_cents",
    "project.eligible_cost_cents",
    "project.requested_amount_cents",
    "project.funding.0.amount_cents",
]


@pytest.mark.parametrize("path", MONEY_FIELDS)
@pytest.mark.parametrize(
    "bad", [12.5, 9_600_000.0, "9600000", True, None], ids=["float", "whole-float", "str", "bool", "null"]
)
def test_money_must_be_an_integer(path: str, bad: Any) -> None:
    found = problems_of(f.application({path: bad}))
    expected_code = "field.not_an_integer"
    assert (expected_code, f.pointer_of(path)) in found


@pytest.mark.parametrize("path", MONEY_FIELDS)
def test_money_must_be_positive(path: str) -> None:
    assert ("field.too_small", f.pointer_of(path)) in problems_of(f.application({path: 0}))


def test_money_above_the_contract_limit_is_refused() -> None:
    huge = 10**13 + 1
    overrides = {
        "project.total_cost_cents": huge,
        "project.eligible_cost_cents": huge,
        "project.requested_amount_cents": huge,
        "project.funding.0.amount_cents": huge,
    }
    found = problems_of(f.application(overrides))
    assert {("field.too_large", f.pointer_of(p)) for p in MONEY_FIELDS} <= set(found)


@pytest.mark.parametrize("bad", [0, 1, "false", "true", "ja", None], ids=repr)
def test_declarations_must_be_json_booleans(bad: Any) -> None:
    # 0 or "false" must not slip through as a (then unnoticed) False, nor "true" as a confirmation.
    found = problems_of(f.application({"declarations.no_double_funding": bad}))
    assert [p for c, p in found] == ["/declarations/no_double_funding"]


# --- the body itself -------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{", "", b"   ", "nicht json", b"\xff\xfe\x00", b'{"applicant": }'], ids=repr)
def test_unparseable_body_is_one_problem_at_the_root(body: bytes | str) -> None:
    assert problems_of(body) == [("body.invalid_json", "")]


@pytest.mark.parametrize("body", [b"[]", b"42", b'"text"', b"null"], ids=repr)
def test_json_that_is_not_an_object_is_refused_at_the_root(body: bytes) -> None:
    assert problems_of(body) == [("field.not_an_object", "")]


def test_empty_object_names_every_required_top_level_field() -> None:
    found = set(problems_of({}))
    assert {("field.required", f"/{name}") for name in ("applicant", "contact", "project", "declarations")} <= found


# --- JSON pointers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ((), ""),
        (("project", "funding", 0, "amount_cents"), "/project/funding/0/amount_cents"),
        (("a/b",), "/a~1b"),
        (("c~d",), "/c~0d"),
        (("~/",), "/~0~1"),
        (("~1",), "/~01"),
        (("",), "/"),
    ],
)
def test_pointer_follows_rfc_6901(path: tuple[object, ...], expected: str) -> None:
    assert pointer(*path) == expected


def test_pointers_in_problems_are_escaped() -> None:
    found = problems_of(f.application({"declarations.a/b~c": True}))
    assert found == [("field.unknown", "/declarations/a~1b~0c")]


# --- application ids and the status ranking -------------------------------------------------


@pytest.mark.parametrize(
    ("number", "expected"),
    [(1, "TH-EGOV-2027-000001"), (123456, "TH-EGOV-2027-123456"), (1234567, "TH-EGOV-2027-1234567")],
)
def test_application_id_is_readable_and_fits_the_contract(number: int, expected: str) -> None:
    ident = application_id(datetime(2027, 12, 31, 23, 59, tzinfo=UTC), number)
    assert ident == expected
    # The contract's id pattern accepts it.
    ApplicationReceived(
        application_id=ident,
        portal_id="portal-a",
        received_at=f.RECEIVED_AT,
        category_open=True,
        application=f.funding_application(),
    )


def test_status_rank_moves_forward_along_the_lifecycle() -> None:
    path = ["received", "needs_manual_review", "eligible", "waitlisted", "funds_reserved", "approved", "withdrawn"]
    ranks = [STATUS_RANK[s] for s in path]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) == len(ranks)
    finals = {"approved", "rejected", "withdrawn"}
    assert min(STATUS_RANK[s] for s in finals) > max(r for s, r in STATUS_RANK.items() if s not in finals)


# --- property-based ----------------------------------------------------------------

NAME = st.text(st.characters(codec="utf-8"), min_size=1, max_size=200)
AGS_SUFFIX = st.from_regex(r"[0-9]{6}", fullmatch=True)
EMAIL = st.from_regex(r"[a-z0-9._%+-]{1,30}@[a-z0-9-]{1,20}(\.[a-z0-9-]{1,10}){0,3}\.[a-z]{2,6}", fullmatch=True)


@st.composite
def valid_applications(draw: st.DrawFn) -> dict[str, Any]:
    suffixes = draw(st.lists(AGS_SUFFIX, min_size=1, max_size=6, unique=True))
    kinds = st.sampled_from([k.value for k in ApplicantKind])
    lead, *partners = ("16" + s for s in suffixes)

    years = draw(st.integers(1, 5))
    requested = draw(st.integers(years, 10**10))
    eligible = draw(st.integers(requested, 10**11))
    total = draw(st.integers(eligible, 10**13))
    cuts = sorted(
        draw(st.lists(st.integers(1, max(1, requested - 1)), min_size=years - 1, max_size=years - 1, unique=True))
    )
    shares = [b - a for a, b in zip([0, *cuts], [*cuts, requested], strict=True)]
    first_year = draw(st.integers(2019, 2100 - years + 1))

    start = draw(st.dates(date(2019, 1, 1), date(2099, 12, 31)))
    end = start + timedelta(days=draw(st.integers(0, 3650)))
    doc = f.application(
        {
            "applicant": {"kind": draw(kinds), "name": draw(NAME), "ags": lead},
            "partners": [{"kind": draw(kinds), "name": draw(NAME), "ags": a} for a in partners],
            "contact.name": draw(NAME),
            "contact.email": draw(EMAIL),
            "project.title": draw(NAME),
            "project.category": draw(st.sampled_from(CATEGORY_IDS)),
            "project.start_date": start.isoformat(),
            "project.end_date": end.isoformat(),
            "project.total_cost_cents": total,
            "project.eligible_cost_cents": eligible,
            "project.requested_amount_cents": requested,
            "project.funding": [
                {"fiscal_year": first_year + i, "amount_cents": share} for i, share in enumerate(shares)
            ],
        }
    )
    if draw(st.booleans()):
        doc["early_start"] = {"planned_start": start.isoformat(), "reason": "Fördermittel der Vorjahre laufen aus."}
    return doc


@PROPERTY_SETTINGS
@given(doc=valid_applications(), as_bytes=st.booleans())
def test_any_valid_application_is_accepted(doc: dict[str, Any], as_bytes: bool) -> None:
    body = json.dumps(doc, ensure_ascii=False).encode() if as_bytes else doc
    result = validate_application(body, RULES)
    assert isinstance(result, FundingApplication), result
    assert result.project.requested_amount_cents == sum(y.amount_cents for y in result.project.funding)
    assert result.applicant.ags == doc["applicant"]["ags"]


# (dotted path, bad value): each breaks exactly that one field, whatever the rest of the application is.
CORRUPTIONS: list[tuple[str, Any]] = [
    ("applicant", "Stadt Musterhausen"),
    ("applicant.kind", "dorf"),
    ("applicant.name", ""),
    ("applicant.name", "x" * 201),
    ("applicant.ags", "1605100"),
    ("applicant.ags", "160510001"),
    ("applicant.ags", "15051000"),
    ("applicant.ags", 16051000),
    ("applicant.ags", f.DELETE),
    ("partners", {"ags": "16066012"}),
    ("contact.email", "keine-adresse"),
    ("contact.email", "a@b"),
    ("contact.name", f.DELETE),
    ("contact.phone", "0" * 41),
    ("contact.fax", "0361 000000"),
    ("project.title", ""),
    ("project.description", "x" * 5001),
    ("project.category", "Dokumentenmanagement"),
    ("project.category", "raumfahrt"),
    ("project.start_date", "2027-02-30"),
    ("project.start_date", "01.03.2027"),
    ("project.end_date", "1999-12-31"),
    ("project.total_cost_cents", 1.5),
    ("project.total_cost_cents", 0),
    ("project.eligible_cost_cents", "100"),
    ("project.requested_amount_cents", True),
    ("project.requested_amount_cents", -1),
    ("project.funding", []),
    ("project.funding", "2027"),
    ("project.funding.0.fiscal_year", 2018),
    ("project.funding.0.fiscal_year", 2101),
    ("project.funding.0.amount_cents", 0),
    ("project.funding.0.amount_cents", 0.5),
    ("project.funding.0.currency", "EUR"),
    ("attachments.0.digest", "md5:abc"),
    ("attachments.0.file_name", "../etc/passwd"),
    ("attachments.0.size_bytes", 0),
    ("early_start", {"planned_start": "2027-01-01"}),
    ("declarations.information_complete_and_true", False),
    ("declarations.project_not_started", "ja"),
    ("declarations.no_double_funding", f.DELETE),
    ("signature", "Erika Mustermann"),
]


def _expected_pointer(path: str, value: Any) -> str:
    if path == "early_start":  # a nested required field is missing
        return "/early_start/reason"
    return f.pointer_of(path)


@PROPERTY_SETTINGS
@given(doc=valid_applications(), corruption=st.sampled_from(CORRUPTIONS))
def test_corrupting_one_field_is_reported_at_that_field(doc: dict[str, Any], corruption: tuple[str, Any]) -> None:
    path, bad = corruption
    if path.startswith("attachments.") and not doc.get("attachments"):
        return
    f.set_path(doc, path, bad)
    found = problems_of(doc)
    assert _expected_pointer(path, bad) in [p for _, p in found], found


def test_every_corruption_fails_on_the_plain_factory_application() -> None:
    """Guards the property above against corruptions that are silently valid."""
    for path, bad in CORRUPTIONS:
        doc = f.application()
        f.set_path(doc, path, bad)
        assert _expected_pointer(path, bad) in [p for _, p in problems_of(doc)], path
