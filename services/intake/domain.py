"""Intake's pure core: validate a submission (every error at once), name applications, rank statuses.

No I/O here; everything is testable without a broker or database.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from runtime import strict_json
from schemas.application import FundingApplication
from schemas.events import ProblemItem

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from schemas.rules import Rules

# pydantic error types -> our stable error codes (the contract portals program against).
_FIELD_CODES = {
    "missing": "field.required",
    "extra_forbidden": "field.unknown",
    "string_pattern_mismatch": "field.invalid_format",
    "string_too_short": "field.too_short",
    "string_too_long": "field.too_long",
    "string_type": "field.not_a_string",
    "greater_than": "field.too_small",
    "greater_than_equal": "field.too_small",
    "less_than": "field.too_large",
    "less_than_equal": "field.too_large",
    "int_type": "field.not_an_integer",
    "int_parsing": "field.not_an_integer",
    "int_from_float": "field.not_an_integer",
    "bool_type": "field.not_a_boolean",
    "bool_parsing": "field.not_a_boolean",
    "date_from_datetime_parsing": "field.invalid_date",
    "date_parsing": "field.invalid_date",
    "date_type": "field.invalid_date",
    "enum": "field.not_allowed",
    "list_type": "field.not_a_list",
    "too_short": "field.too_few",
    "too_long": "field.too_many",
    "model_type": "field.not_an_object",
    "model_attributes_type": "field.not_an_object",
    "dict_type": "field.not_an_object",
    "json_invalid": "body.invalid_json",
}


def pointer(*path: object) -> str:
    """RFC 6901 JSON pointer for a location."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _field_problems(err: ValidationError) -> Iterator[ProblemItem]:
    for e in err.errors(include_url=False):
        yield ProblemItem(
            code=_FIELD_CODES.get(e["type"], "field.invalid"), pointer=pointer(*e["loc"]), detail=e["msg"]
        )


def _get(raw: object, *path: str) -> Any:
    for key in path:
        if not isinstance(raw, dict):
            return None
        raw = raw.get(key)
    return raw


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _date(value: object) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _amount_problems(project: object) -> Iterator[ProblemItem]:
    total, eligible, requested = (
        _int(_get(project, f)) for f in ("total_cost_cents", "eligible_cost_cents", "requested_amount_cents")
    )
    if requested is not None and eligible is not None and requested > eligible:
        yield ProblemItem(
            code="amount.requested_exceeds_eligible",
            pointer="/project/requested_amount_cents",
            detail="requested amount exceeds the eligible cost",
        )
    if eligible is not None and total is not None and eligible > total:
        yield ProblemItem(
            code="amount.eligible_exceeds_total",
            pointer="/project/eligible_cost_cents",
            detail="eligible cost exceeds the total cost",
        )
    funding = _get(project, "funding")
    if isinstance(funding, list) and requested is not None:
        amounts = [_int(_get(f, "amount_cents")) for f in funding]
        if all(a is not None for a in amounts) and sum(a for a in amounts if a) != requested:
            yield ProblemItem(
                code="funding.sum_mismatch",
                pointer="/project/funding",
                detail="amounts per fiscal year must add up to the requested amount",
            )
        years = [_get(f, "fiscal_year") for f in funding]
        if len(years) != len(set(map(str, years))):
            yield ProblemItem(
                code="funding.duplicate_year", pointer="/project/funding", detail="each fiscal year may appear once"
            )


def _date_problems(project: object) -> Iterator[ProblemItem]:
    start, end = _date(_get(project, "start_date")), _date(_get(project, "end_date"))
    if start and end and end < start:
        yield ProblemItem(
            code="dates.end_before_start", pointer="/project/end_date", detail="the project ends before it starts"
        )


def _applicant_problems(raw: object, state_code: str) -> Iterator[ProblemItem]:
    lead = _get(raw, "applicant", "ags")
    if isinstance(lead, str) and len(lead) == 8 and not lead.startswith(state_code):
        yield ProblemItem(
            code="applicant.not_in_thueringen",
            pointer="/applicant/ags",
            detail=f"the applicant's AGS must start with Thüringen's state code {state_code}",
        )
    partners = _get(raw, "partners")
    if not isinstance(partners, list):
        return
    seen: set[str] = set()
    for i, partner in enumerate(partners):
        ags = _get(partner, "ags")
        if not isinstance(ags, str):
            continue
        if ags == lead:
            yield ProblemItem(
                code="partners.duplicates_lead",
                pointer=pointer("partners", i, "ags"),
                detail="a partner must differ from the lead applicant",
            )
        elif ags in seen:
            yield ProblemItem(
                code="partners.duplicate", pointer=pointer("partners", i, "ags"), detail="each partner may appear once"
            )
        elif len(ags) == 8 and not ags.startswith(state_code):
            yield ProblemItem(
                code="partner.not_in_thueringen",
                pointer=pointer("partners", i, "ags"),
                detail=f"a partner's AGS must start with Thüringen's state code {state_code}",
            )
        seen.add(ags)


def _form_problems(raw: object, rules: Rules) -> Iterator[ProblemItem]:
    category = _get(raw, "project", "category")
    if isinstance(category, str) and rules.category(category) is None:
        yield ProblemItem(
            code="category.unknown",
            pointer="/project/category",
            detail=f"unknown category; known: {', '.join(c.id for c in rules.categories)}",
        )
    declarations = _get(raw, "declarations")
    if isinstance(declarations, dict):
        for name, value in declarations.items():
            if value is False:
                yield ProblemItem(
                    code="declarations.not_confirmed",
                    pointer=pointer("declarations", name),
                    detail="every declaration must be confirmed",
                )


def cross_field_problems(raw: object, rules: Rules) -> list[ProblemItem]:
    """Checks that need several fields; they run even when some fields failed on their own."""
    project = _get(raw, "project")
    return [
        *_amount_problems(project),
        *_date_problems(project),
        *_applicant_problems(raw, rules.state_code),
        *_form_problems(raw, rules),
    ]


def body_digest(application: dict[str, object]) -> bytes:
    """The same application always hashes the same, however the portal ordered its keys: the
    idempotency check on both paths compares this, not the bytes."""
    canonical = json.dumps(application, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).digest()


def parse_body(body: bytes | str) -> Any:
    """The JSON document, refusing an object that names a member twice (RFC 8259 leaves it open)."""
    return strict_json.loads(body)


def duplicate_problem(member: strict_json.DuplicateMember) -> ProblemItem:
    return ProblemItem(code=strict_json.DUPLICATE_KEY, pointer=member.pointer, detail=str(member))


def validate_application(body: bytes | str | dict[str, Any], rules: Rules) -> FundingApplication | list[ProblemItem]:
    """The application, or every problem with it at once."""
    try:
        raw = parse_body(body) if isinstance(body, bytes | str) else body
    except strict_json.DuplicateMember as member:
        return [duplicate_problem(member)]
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        return [ProblemItem(code="body.invalid_json", pointer="", detail="the body is not valid JSON")]
    problems: list[ProblemItem] = []
    application: FundingApplication | None = None
    try:
        application = FundingApplication.model_validate(raw)
    except ValidationError as err:
        problems.extend(_field_problems(err))
    problems.extend(cross_field_problems(raw, rules))
    if problems or application is None:
        return _unique(problems)
    return application


def _unique(problems: Iterable[ProblemItem]) -> list[ProblemItem]:
    seen: set[tuple[str, str]] = set()
    unique = []
    for p in problems:
        if (p.code, p.pointer) not in seen:
            seen.add((p.code, p.pointer))
            unique.append(p)
    return unique


def application_id(received_at: datetime, number: int) -> str:
    """Readable by a person and unique: the receipt year and a database sequence number."""
    return f"TH-EGOV-{received_at.year}-{number:06d}"


# The status read model only moves forward: a late event from another topic never undoes a later state.
STATUS_RANK = {
    "received": 10,
    "earmarked": 15,
    "needs_manual_review": 20,
    "eligible": 30,
    "ineligible": 30,
    "waitlisted": 40,
    "funds_reserved": 50,
    "approved": 90,
    "rejected": 90,
    "withdrawn": 95,
}
