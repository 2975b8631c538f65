"""python -m audit {timeline,budget,verify}: the audit trail from the topics alone. See audit/__init__.py.

Connects as the principal in ``EGOV_KAFKA_USERNAME``/``EGOV_KAFKA_PASSWORD`` (the ``audit`` principal reads
every topic), over TLS with ``EGOV_KAFKA_CA_FILE``; see ``runtime.settings.ToolSettings``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit.budget import budget_report
from audit.reader import LogRead, read_log
from audit.render import budget_tables, timeline_table, verify_tables
from audit.timeline import timeline
from audit.verify import unreadable_records, verify
from runtime.settings import ToolSettings
from runtime.signing import load_public_keys

if TYPE_CHECKING:
    from runtime.kafka import KafkaAccess


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m audit",
        description="The audit trail rebuilt from the log.",
        epilog="Exit codes: 0 done (verify: every guarantee holds), 1 nothing found (timeline, budget) or a "
        "violation found (verify), 2 usage. Reads only; prints progress on stderr while reading a long log.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bootstrap", help="Kafka bootstrap servers (default: EGOV_KAFKA_BOOTSTRAP)")
    common.add_argument("--json", action="store_true", help="print JSON for machines instead of tables")
    common.add_argument("--timeout", type=float, default=120.0, help="seconds to read the log to its end")
    commands = root.add_subparsers(dest="command", required=True)
    timeline_cmd = commands.add_parser("timeline", parents=[common], help="every event of one application")
    timeline_cmd.add_argument("application_id")
    budget_cmd = commands.add_parser("budget", parents=[common], help="a fiscal year's pot and line over time")
    budget_cmd.add_argument("year", type=int)
    verify_cmd = commands.add_parser("verify", parents=[common], help="check the guarantees over the whole log")
    verify_cmd.add_argument(
        "--public-key",
        type=Path,
        action="append",
        default=[],
        help="PEM key to check decision signatures with (repeat for older keys); without it signatures are not checked",
    )
    verify_cmd.add_argument("--waitlist-policy", choices=("strict", "first_fit"), default="strict")
    verify_cmd.add_argument(
        "--application",
        action="append",
        default=[],
        help="report only what concerns this application (repeatable); the whole log is checked",
    )
    return root


class ProgressLine:
    """Progress of a long scan on stderr, every few seconds; a scan shorter than that prints nothing,
    and stdout keeps only the answer (tables or JSON), so a pipe into jq still works."""

    def __init__(self, every_seconds: float = 2.0) -> None:
        self.every = every_seconds
        self.started = time.monotonic()
        self.last = self.started
        self.printed = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        share = f" ({100 * done // total}%)" if total else ""
        print(f"audit: read {done:,} of {total:,} records{share}, {now - self.started:.0f}s", file=sys.stderr)
        self.printed = True

    def finish(self, read: LogRead) -> None:
        if self.printed:
            seconds = time.monotonic() - self.started
            print(f"audit: read {len(read.envelopes):,} events in {seconds:.0f}s", file=sys.stderr)


async def read_within(kafka: KafkaAccess, seconds: float) -> LogRead:
    progress = ProgressLine()
    async with asyncio.timeout(seconds):
        read = await read_log(kafka, progress=progress)
    progress.finish(read)
    return read


def emit(data: Any, text: str, as_json: bool) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str) if as_json else text)


def timeline_command(args: argparse.Namespace, log: LogRead) -> int:
    rows = timeline(log.envelopes, args.application_id)
    emit(rows, timeline_table(rows) if rows else f"no events for {args.application_id}", args.json)
    return 0 if rows else 1


def budget_command(args: argparse.Namespace, log: LogRead) -> int:
    report = budget_report(log.envelopes, args.year)
    emit(report, budget_tables(report), args.json)
    return 0 if report["movements"] else 1


def verify_command(args: argparse.Namespace, log: LogRead) -> int:
    keys = load_public_keys(args.public_key) if args.public_key else None
    result = verify(log.envelopes, public_keys=keys, policy=args.waitlist_policy)
    result.violations[:0] = unreadable_records(log.unreadable)
    if args.application:
        scope = set(args.application)
        result.violations = [v for v in result.violations if scope & set(v.applications)]
        result.in_progress = [p for p in result.in_progress if p.application_id in scope]
    emit(result.as_json(), verify_tables(result), args.json)
    return 0 if result.ok else 1


COMMANDS = {"timeline": timeline_command, "budget": budget_command, "verify": verify_command}


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    kafka = ToolSettings().kafka
    if args.bootstrap:
        kafka = dataclasses.replace(kafka, bootstrap=args.bootstrap)
    log = asyncio.run(read_within(kafka, args.timeout))
    return COMMANDS[args.command](args, log)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
