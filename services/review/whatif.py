"""What if another rules version had reviewed the applications of a period? Prints, emits nothing.

python -m services.review.whatif --rules schemas/rules/egov-2025-v2.toml --from 2027-01-01 --to 2027-12-31
    [--changed-only]

Reads the received applications the review service stored with each review (REVIEW_DATABASE_URL)
whose receipt time lies in [FROM 00:00 UTC, TO + 1 day 00:00 UTC), in a read-only transaction,
replays the automatic review under the given rules file, and prints per application the recorded
version and outcome beside the replayed one, then a summary. It publishes nothing and writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.db import create_pool
from schemas.events import ApplicationReceived, ReviewOutcome, RuleFinding
from schemas.rules import Rules, RulesFileError, load_rules
from services.review import store
from services.review.rereview import Measure, Recorded, Replayed, changes, replay
from services.review.settings import ReviewSettings

if TYPE_CHECKING:
    import asyncpg


def _recorded(row: asyncpg.Record) -> Recorded:
    decided = row["decided_outcome"]
    return Recorded(
        received=ApplicationReceived.model_validate_json(row["received_event"]),
        rules_version=row["rules_version"],
        outcome=ReviewOutcome(row["outcome"]),
        findings=[RuleFinding.model_validate(f) for f in json.loads(row["findings"])],
        decided_outcome=ReviewOutcome(decided) if decided else None,
    )


def _measure(row: asyncpg.Record) -> Measure:
    return Measure(
        row["application_id"], frozenset(row["applicant_ags"]), row["category"], frozenset(row["fiscal_years"])
    )


async def load_period(dsn: str, start: datetime, end: datetime) -> tuple[list[Recorded], list[Measure]]:
    pool = await create_pool(dsn, max_size=1)
    try:
        async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
            rows = await store.reviews_received_between(conn, start, end)
            before = await store.open_measures_before(conn, start)
    finally:
        await pool.close()
    return [_recorded(r) for r in rows], [_measure(r) for r in before]


def _line(r: Replayed) -> str:
    rec = r.recorded
    recorded = f"{rec.rules_version}: {rec.outcome.value}"
    if rec.decided_outcome:
        recorded += f" -> {rec.decided_outcome.value} (caseworker)"
    mark = "*" if r.changed else " "
    received = rec.received.received_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    rules = ", ".join(r.differing_rules) or "-"
    return f"{mark} {rec.received.application_id:<22} {received:<17} {recorded:<60} {r.outcome.value:<20} {rules}"


def report(results: list[Replayed], rules: Rules, first: date, last: date, *, changed_only: bool) -> str:
    lines = [
        f"What if {rules.version} had reviewed the applications received {first} .. {last} (UTC):",
        f"  {'application':<22} {'received (UTC)':<17} {'recorded':<60} {'what if':<20} rules that differ",
    ]
    lines += [_line(r) for r in results if r.changed or not changed_only]
    moved = changes(results)
    summary = ", ".join(f"{a.value} -> {b.value}: {n}" for (a, b), n in sorted(moved.items()))
    lines.append(
        f"{len(results)} applications replayed, {sum(moved.values())} would change"
        + (f" ({summary})" if summary else "")
        + ". Nothing was emitted."
    )
    return "\n".join(lines)


def _day(text: str) -> date:
    return date.fromisoformat(text)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.review.whatif",
        description=__doc__.split("\n")[0],
        epilog="Exit codes: 0 reported (nothing is emitted), 1 failed (database unreachable), "
        "2 usage or an invalid rules file or period.",
    )
    parser.add_argument("--rules", type=Path, required=True, help="the rules file to replay under")
    parser.add_argument("--from", dest="first", type=_day, required=True, help="first day of receipt (UTC)")
    parser.add_argument("--to", dest="last", type=_day, required=True, help="last day of receipt (UTC), inclusive")
    parser.add_argument("--changed-only", action="store_true", help="print only applications whose outcome changes")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    try:
        rules = load_rules(args.rules)
    except RulesFileError as err:
        print(err, file=sys.stderr)
        return 2
    if args.last < args.first:
        print("--to lies before --from", file=sys.stderr)
        return 2
    start = datetime.combine(args.first, time(), UTC)
    end = datetime.combine(args.last + timedelta(days=1), time(), UTC)
    recorded, before = asyncio.run(load_period(ReviewSettings().dsn, start, end))
    print(report(replay(recorded, rules, before), rules, args.first, args.last, changed_only=args.changed_only))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
