"""Builders for valid test data, shared by every unit test module.

``application()`` returns a fresh, valid application dict: the demo sample with its project
moved well into the future. Overrides are dotted paths (list items by index), so a test
names exactly the one field it changes::

    application({"project.requested_amount_cents": 1, "partners.0.ags": "15051000"})
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

from schemas.application import FundingApplication
from schemas.rules import Rules, load_rules

REPO = Path(__file__).resolve().parents[2]
SAMPLE_PATH = REPO / "deploy" / "demo" / "application.json"

# Far enough ahead that "the project has not started yet" holds for any realistic receipt time.
FUTURE_YEAR = 2090
START = date(FUTURE_YEAR, 3, 1)
END = date(FUTURE_YEAR, 12, 31)
RECEIVED_AT = datetime(2027, 1, 15, 9, 30, tzinfo=UTC)

LEAD_AGS = "16051000"
PARTNER_AGS = "16066012"
REQUESTED = 9_600_000  # 96,000.00 EUR: exactly 80 % of the eligible cost
ELIGIBLE = 12_000_000
TOTAL = 15_000_000


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"

    def __deepcopy__(self, memo: dict[int, Any]) -> _Delete:
        return self  # a singleton: identity marks it


DELETE: Any = _Delete()
"""Use as an override value to remove the key at that path."""


@cache
def _sample() -> dict[str, Any]:
    sample: dict[str, Any] = json.loads(SAMPLE_PATH.read_text(encoding="utf-8"))
    return sample


@cache
def rules() -> Rules:
    return load_rules()


def _step(key: str) -> str | int:
    return int(key) if key.isdigit() else key


def set_path(document: Any, path: str, value: Any) -> None:
    """Set (or with ``DELETE`` remove) the value at a dotted path, e.g. ``project.funding.0.amount_cents``."""
    *parents, last = (_step(k) for k in path.split("."))
    node = document
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list) and last == len(node):
        node.append(value)
    else:
        node[last] = value


def get_path(document: Any, path: str) -> Any:
    node = document
    for key in (_step(k) for k in path.split(".")):
        node = node[key]
    return node


def pointer_of(path: str) -> str:
    """The JSON pointer intake reports for a dotted path (no escaping needed for our field names)."""
    return "/" + path.replace(".", "/")


def application(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A valid application dict (a deep copy, safe to mutate) with the overrides applied in order."""
    doc = copy.deepcopy(_sample())
    project = doc["project"]
    project["start_date"] = START.isoformat()
    project["end_date"] = END.isoformat()
    project["total_cost_cents"] = TOTAL
    project["eligible_cost_cents"] = ELIGIBLE
    project["requested_amount_cents"] = REQUESTED
    project["funding"] = [{"fiscal_year": FUTURE_YEAR, "amount_cents": REQUESTED}]
    for path, value in (overrides or {}).items():
        set_path(doc, path, copy.deepcopy(value))
    return doc


def amounts(requested: int, *, rate_percent: int = 80, year: int = FUTURE_YEAR) -> dict[str, Any]:
    """Overrides for a consistent money block: the eligible cost makes ``requested`` exactly the allowed share."""
    eligible = -(-requested * 100 // rate_percent)  # ceiling division: requested <= eligible * rate // 100
    return {
        "project.requested_amount_cents": requested,
        "project.eligible_cost_cents": eligible,
        "project.total_cost_cents": eligible,
        "project.funding": [{"fiscal_year": year, "amount_cents": requested}],
    }


def funding_application(overrides: Mapping[str, Any] | None = None) -> FundingApplication:
    """The validated contract model (field checks only; cross-field checks are intake's)."""
    return FundingApplication.model_validate(application(overrides))
