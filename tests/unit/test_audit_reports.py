"""timeline and budget over a seeded log, and how the reports read for people."""

from __future__ import annotations

import json
import random

import pytest

from audit.budget import budget_report
from audit.log import in_order
from audit.render import budget_tables, timeline_table, verify_tables
from audit.timeline import PERSONAL_DATA_OMITTED, timeline
from audit.verify import verify
from schemas import events as ev
from tests.unit.test_audit_verify import YEAR, app, clean_log

pytestmark = pytest.mark.unit


def test_timeline_lists_one_applications_events_in_order_with_their_causes() -> None:
    log = clean_log()
    shuffled = random.Random(7).sample(log.events, len(log.events))  # topics are read one after the other
    rows = timeline(shuffled, app(3))
    assert [r["type"] for r in rows] == [
        "application.received.v1",
        "application.reviewed.v1",
        "budget.waitlisted.v1",
        "budget.reserved.v1",
        "budget.committed.v1",
        "application.decided.v1",
    ]
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)
    reserved = rows[3]
    assert (reserved["cause_type"], reserved["summary"]) == ("budget.pot_adjusted.v1", "2027: 1.00 EUR")
    assert rows[1]["cause_type"] == "application.received.v1"
    assert rows[0]["topic"] == "egov.applications.v1"
    assert rows[-1]["summary"] == "approved 1.00 EUR"


def test_timeline_leaves_personal_data_out() -> None:
    rows = timeline(clean_log().events, app(1))
    assert rows[0]["data"]["application"]["contact"] == PERSONAL_DATA_OMITTED
    text = json.dumps(rows) + timeline_table(rows)
    assert "@" not in text
    assert "Mustermann" not in text


def test_timeline_shows_a_cause_missing_from_the_log() -> None:
    log = clean_log()
    received = next(e for e in log.events if e.subject == app(3) and e.is_a(ev.ApplicationReceived))
    rows = timeline([e for e in log.events if e.id != received.id], app(3))
    assert rows[0]["cause_type"] == "missing from the log"


def test_budget_replays_the_pot_and_the_line() -> None:
    report = budget_report(clean_log().events, YEAR)
    movements = [
        (m["event"], m["application_id"], m["reserved_cents"], m["committed_cents"]) for m in report["movements"]
    ]
    assert movements[0] == ("budget.fiscal_year_opened.v1", None, 0, 0)
    assert ("budget.pot_adjusted.v1", None, 0, 250) in movements
    assert movements[-1] == ("budget.released.v1", app(7), 0, 390)
    assert report["final"] | {"pot": ""} == {
        "pot_cents": 500,
        "earmarked_cents": 0,
        "reserved_cents": 0,
        "committed_cents": 390,
        "available_cents": 110,
        "closed": False,
        "pot": "",
    }
    assert [(r["application_id"], r["what"]) for r in report["line"]] == [
        (app(3), "waits at position 1 (insufficient_funds)"),
        (app(4), "waits at position 2 (insufficient_funds)"),
        (app(6), "waits at position 3 (category_paused)"),
        (app(3), "leaves the line: budget.reserved.v1"),
        (app(4), "leaves the line: budget.reserved.v1"),
    ]
    assert report["waiting_now"] == [app(6)]
    assert "Waiting now, in line order: " + app(6) in budget_tables(report)


def test_budget_of_a_year_nobody_used_is_empty() -> None:
    assert budget_report(clean_log().events, 2031)["movements"] == []


def test_verify_table_names_each_violation_with_its_events() -> None:
    log = clean_log()
    again = log.reserve(1, 100)
    text = verify_tables(verify(log.events))
    assert "VIOLATIONS" in text
    assert again.id in text
    assert "money held twice for 2027" in text
    assert "not checked (no --public-key)" in text
    assert text.endswith("FAILED: 1 violation(s)")
    assert verify_tables(verify(in_order(clean_log().events))).endswith("OK: every guarantee holds")
