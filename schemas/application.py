"""The funding application as a portal submits it, and as ApplicationReceived carries it.

Field-level constraints live here (the contract); cross-field checks that need
the whole application live in intake's domain module. Money is integer euro cents.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# strict: 12.5 or "1250" is an error, not silently coerced money.
Cents = Annotated[int, Field(strict=True, ge=0, le=10**13, description="Euro cents (integer)")]
PositiveCents = Annotated[int, Field(strict=True, gt=0, le=10**13, description="Euro cents (integer)")]
FiscalYear = Annotated[int, Field(ge=2019, le=2100)]
# Amtlicher Gemeindeschlüssel: 8 digits; Thüringen's state code 16 is checked by intake.
Ags = Annotated[str, Field(pattern=r"^[0-9]{8}$", description="Amtlicher Gemeindeschlüssel (8 digits)")]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]


class ApplicantKind(StrEnum):
    GEMEINDE = "gemeinde"
    STADT = "stadt"
    LANDKREIS = "landkreis"
    VERWALTUNGSGEMEINSCHAFT = "verwaltungsgemeinschaft"
    ZWECKVERBAND = "zweckverband"


class Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Municipality(Contract):
    kind: ApplicantKind
    name: ShortText
    ags: Ags


class ContactPerson(Contract):
    """Personal data: kept to what notices need, never logged."""

    name: ShortText
    email: Annotated[str, Field(pattern=r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$", max_length=254)]
    phone: Annotated[str, Field(max_length=40)] | None = None


class FundingYear(Contract):
    fiscal_year: FiscalYear
    amount_cents: PositiveCents


class Project(Contract):
    title: ShortText
    description: Annotated[str, Field(min_length=1, max_length=5000)]
    category: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,40}$", description="Category id from the rules file")]
    start_date: date
    end_date: date
    total_cost_cents: PositiveCents
    eligible_cost_cents: PositiveCents
    requested_amount_cents: PositiveCents
    funding: Annotated[list[FundingYear], Field(min_length=1, max_length=5)]


class EarlyStartRequest(Contract):
    """Vorzeitiger Maßnahmebeginn: a request with a reason; permission is no funding promise."""

    planned_start: date
    reason: Annotated[str, Field(min_length=10, max_length=2000)]


class Attachment(Contract):
    file_name: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^/\\]+$")]
    media_type: Annotated[str, Field(pattern=r"^[a-z]+/[a-zA-Z0-9.+-]+$")]
    size_bytes: Annotated[int, Field(gt=0, le=100 * 1024 * 1024)]
    kind: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,40}$", description="What the document is, e.g. cost_plan")]
    digest: Annotated[
        str,
        Field(pattern=r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$", description="sha256:<hex> or sha512:<hex>"),
    ]


# strict: 0, 1, "true" or "no" are errors, not silently coerced confirmations (or unnoticed refusals).
Confirmation = Annotated[bool, Field(strict=True)]


class Declarations(Contract):
    information_complete_and_true: Confirmation
    no_double_funding: Confirmation
    project_not_started: Confirmation


class FundingApplication(Contract):
    applicant: Municipality
    partners: Annotated[list[Municipality], Field(max_length=50)] = []
    contact: ContactPerson
    project: Project
    early_start: EarlyStartRequest | None = None
    attachments: Annotated[list[Attachment], Field(max_length=50)] = []
    declarations: Declarations
