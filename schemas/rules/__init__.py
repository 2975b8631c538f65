"""The versioned rules files of the funding guideline, and their validated shape.

One TOML file per guideline version, reviewable in a pull request. Intake reads
the categories; review applies the rules; every review records ``version``.
"""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.application import ApplicantKind

RULES_DIR = Path(__file__).parent
DEFAULT_RULES = RULES_DIR / "egov-2024-v1.toml"


class RulesFileError(ValueError):
    """The rules file is missing or malformed; the message says where."""


class Category(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,40}$")]
    name: str
    open: bool
    financing: Literal["share", "fixed"]
    max_rate_percent: Annotated[int, Field(gt=0, le=100)] | None = None
    fixed_amount_cents: Annotated[int, Field(gt=0)] | None = None
    required_attachments: list[str] = []

    @model_validator(mode="after")
    def _financing_complete(self) -> Self:
        if self.financing == "share" and self.max_rate_percent is None:
            raise ValueError(f"category {self.id}: share financing needs max_rate_percent")
        if self.financing == "fixed" and self.fixed_amount_cents is None:
            raise ValueError(f"category {self.id}: fixed financing needs fixed_amount_cents")
        return self


class DocumentRules(BaseModel):
    """What a portal may upload and how long an application may wait for its documents."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Formats a caseworker can open; an announced attachment of another type is refused at upload.
    allowed_media_types: Annotated[list[str], Field(min_length=1)] = [
        "application/pdf",
        "image/jpeg",
        "image/png",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.oasis.opendocument.spreadsheet",
    ]
    # An application still missing announced attachments this many days after receipt expires.
    complete_within_days: Annotated[int, Field(ge=1, le=365)] = 14
    # A document request left unanswered this many days expires the application.
    answer_within_days: Annotated[int, Field(ge=1, le=365)] = 14


class Rules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Annotated[str, Field(min_length=1)]
    guideline: str
    valid_from: date
    state_code: Annotated[str, Field(pattern=r"^[0-9]{2}$")]
    min_grant_cents: Annotated[int, Field(gt=0)]
    max_grant_cents: Annotated[int, Field(gt=0)]
    four_eyes_above_cents: Annotated[int, Field(gt=0)]
    allowed_applicant_kinds: list[ApplicantKind]
    categories: Annotated[list[Category], Field(min_length=1)]
    documents: DocumentRules = DocumentRules()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.min_grant_cents > self.max_grant_cents:
            raise ValueError("min_grant_cents exceeds max_grant_cents")
        ids = [c.id for c in self.categories]
        if len(ids) != len(set(ids)):
            raise ValueError("category ids are not unique")
        return self

    def category(self, category_id: str) -> Category | None:
        return next((c for c in self.categories if c.id == category_id), None)


def load_rules(path: Path = DEFAULT_RULES) -> Rules:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return Rules.model_validate(raw)
    except FileNotFoundError as err:
        raise RulesFileError(f"rules file {path} not found") from err
    except UnicodeDecodeError as err:
        raise RulesFileError(f"rules file {path} is not UTF-8: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise RulesFileError(f"rules file {path} is not valid TOML: {err}") from err
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise RulesFileError(f"rules file {path} is invalid: {problems}") from err
