"""Human tables for the audit commands; ``--json`` prints the same data for machines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from audit.log import euros
from audit.verify import CHECKS, Report

if TYPE_CHECKING:
    from collections.abc import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def timeline_table(rows: list[dict[str, Any]]) -> str:
    columns = ("time", "type", "source", "actor", "summary", "id", "causationid", "cause_type")
    return table(columns, [[r[c] for c in columns] for r in rows])


def budget_tables(report: dict[str, Any]) -> str:
    money = ("amount_cents", "pot_cents", "reserved_cents", "committed_cents", "available_cents")
    movements = [
        [
            m["time"],
            m["event"],
            m["application_id"] or m["actor"],
            *("" if m[k] is None else euros(m[k]) for k in money),
            m["id"],
        ]
        for m in report["movements"]
    ]
    final = report["final"]
    parts = [
        f"Fiscal year {report['fiscal_year']}: pot {final['pot']}" + (" (closed)" if final["closed"] else ""),
        table(
            ("time", "event", "application/actor", "amount", "pot", "reserved", "committed", "available", "id"),
            movements,
        ),
        "",
        "The line (waitlist) over time:",
        table(("time", "application", "what"), [[r["time"], r["application_id"], r["what"]] for r in report["line"]]),
        "",
        "Waiting now, in line order: " + (", ".join(report["waiting_now"]) or "nobody"),
    ]
    return "\n".join(parts)


def verify_tables(report: Report) -> str:
    checks = [[c, "ok" if not report.count(c) else f"{report.count(c)} violation(s)"] for c in CHECKS]
    if not report.signatures_checked:
        checks[CHECKS.index("signature")][1] = "not checked (no --public-key)"
    parts = [
        f"{report.events} events, {report.applications} applications, {len(report.in_progress)} in progress",
        table(("check", "result"), checks),
    ]
    if report.violations:
        rows = [
            [v.check, ", ".join(v.applications) or v.fiscal_year, v.message, " ".join(v.events)]
            for v in report.violations
        ]
        parts += ["", "VIOLATIONS", table(("check", "application/year", "what", "events"), rows)]
    if report.in_progress:
        rows = [[p.application_id, p.last_type, p.since, p.last_event] for p in report.in_progress]
        parts += ["", "In progress (not a violation)", table(("application", "last event", "since", "id"), rows)]
    parts += ["", "OK: every guarantee holds" if report.ok else f"FAILED: {len(report.violations)} violation(s)"]
    return "\n".join(parts)
