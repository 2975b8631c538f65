"""What a fault run must leave behind, checked over the log and the databases once the pipeline is quiet.

- the audit (``python -m audit verify --json``, as the audit principal) finds nothing, except the poison
  the driver wrote on domain topics, which it must report, each of them;
- every accepted application (a 202) is on the log, and is decided, withdrawn or in progress (the
  audit says which are in progress, and that none is decided twice);
- every notice was delivered and arrived (mail server, portal endpoint), and a notice that arrived
  twice arrived with the same content both times;
- the budget database holds exactly the reservations the log's budget events leave active, no
  application holds two, and no pot has more reserved and committed than it holds;
- every poison record that must be dead-lettered is in the dead-letter topic of every service that
  reads its topic, and no consumer is behind at the end (nothing stalled).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
from aiokafka import TopicPartition

from audit.log import in_order
from audit.reader import read_log
from runtime.kafka import KafkaAccess, make_reader
from schemas.events import (
    ApplicationDecided,
    ApplicationReceived,
    ApplicationReviewed,
    ApplicationWithdrawn,
    FundsEarmarked,
    FundsReleased,
    FundsReserved,
    ReviewOutcome,
)
from schemas.topics import ALL_TOPICS, Topic, dead_letters
from tests.faults.plan import SERVICES, PoisonKind
from tests.support import REPO, as_principal

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from email.message import Message

    from tests.faults.driver import Outcome
    from tests.faults.receiver import CallbackReceiver
    from tests.support import ServiceDatabase

# Where an application may rest once the pipeline is quiet: waiting for money, or for a person (an
# earmark rests only while a caseworker has the case). Anything else in progress was lost on the way.
RESTING = {"budget.waitlisted.v1", "application.documents_requested.v1", "application.review_proposed.v1"}
DEAD_LETTERED = {PoisonKind.GARBAGE, PoisonKind.NULL_VALUE, PoisonKind.WRONG_KEY, PoisonKind.NEAR_LIMIT}
# Unknown types are counted, not dead-lettered (README); the audit reports them, and garbage on a
# domain topic. A portal's garbage on the submissions topic is intake's to answer, not the audit's.
AUDIT_REPORTED = {PoisonKind.GARBAGE, PoisonKind.NULL_VALUE, PoisonKind.UNKNOWN_TYPE}


@dataclass(frozen=True)
class Injected:
    kind: PoisonKind
    topic: Topic
    partition: int
    offset: int

    @property
    def where(self) -> str:
        return f"{self.topic.name}/{self.partition}/{self.offset}"


@contextlib.asynccontextmanager
async def log_size(kafka: KafkaAccess) -> AsyncIterator[Callable[[], Awaitable[int]]]:
    """A function that counts the records on every topic, dead letters included (one reader for all
    calls): unchanged for a while means quiet."""
    consumer = make_reader(kafka, "faults-size")
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [
            TopicPartition(t.name, p) for t in ALL_TOPICS for p in (consumer.partitions_for_topic(t.name) or ())
        ]

        async def size() -> int:
            return sum((await consumer.end_offsets(partitions)).values())

        yield size
    finally:
        await consumer.stop()


async def dead_letter_origins(kafka: KafkaAccess, service: str) -> set[str]:
    topic = dead_letters(service).name
    consumer = make_reader(kafka, "faults-dead-letters")
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        origins: set[str] = set()
        pending = {tp for tp, end in ends.items() if end > 0}
        while pending:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                origins.update(dict(r.headers).get("dlq_origin", b"").decode() for r in records)
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
        return origins
    finally:
        await consumer.stop()


def audit_verify(kafka: KafkaAccess) -> dict[str, Any]:
    env = {"PATH": "/usr/bin:/bin", **as_principal(kafka, "audit").env("EGOV_")}
    done = subprocess.run(
        [sys.executable, "-m", "audit", "verify", "--json"], cwd=REPO, env=env, capture_output=True, text=True
    )
    if not done.stdout.strip():
        raise RuntimeError(f"audit verify printed nothing: {done.stderr}")
    return dict(json.loads(done.stdout))


@dataclass(frozen=True)
class Deliveries:
    """What reached the portal's endpoint and the mail server during the run."""

    callbacks: CallbackReceiver
    mails: list[Message]  # the sink's own list: read after the database, so a late delivery is in it
    # Applications budget counted as arriving behind their partition's frontier. The frontier is intake's
    # watermark (README, "A place is decided once no earlier one can still arrive"), a proven bound: any
    # late arrival means a watermark was false, and is a violation of its own.
    late_arrivals: set[str]


async def check(
    kafka: KafkaAccess,
    databases: dict[str, ServiceDatabase],
    outcome: Outcome,
    ports: dict[str, int],
    deliveries: Deliveries,
) -> list[str]:
    problems: list[str] = []
    report = audit_verify(kafka)
    expected = {p.where for p in outcome.poison if p.kind in AUDIT_REPORTED}
    reported: set[str] = set()
    for violation in report["violations"]:
        hit = [w for w in expected if violation["check"] == "payload" and f"{w}:" in violation["message"]]
        if hit:
            reported.update(hit)
            continue
        problems.append(f"audit {violation['check']}: {violation['message']} {violation.get('applications', '')}")
    problems += [f"poison at {w} not reported by the audit" for w in sorted(expected - reported)]
    problems += [
        f"{a} arrived behind its partition's frontier: a watermark was false" for a in sorted(deliveries.late_arrivals)
    ]
    in_progress = {p["application_id"] for p in report["in_progress"]}

    history = in_order((await read_log(kafka)).envelopes)
    problems += stuck(report["in_progress"], history)
    received = {e.subject for e in history if e.is_a(ApplicationReceived)}
    decided = Counter(e.subject for e in history if e.is_a(ApplicationDecided))
    withdrawn = {e.subject for e in history if e.is_a(ApplicationWithdrawn)}
    for index, app_id in sorted(outcome.accepted.items()):
        if app_id not in received:
            problems.append(f"accepted application {app_id} (submission {index}) is not on the log")
        elif not decided[app_id] and app_id not in withdrawn and app_id not in in_progress:
            problems.append(f"accepted application {app_id} is neither decided, withdrawn nor in progress")
    problems += await budget_matches_log(databases["budget"].runtime, history)
    answered = [e.id for e in history if e.is_a(ApplicationReceived) or e.is_a(ApplicationDecided)]
    problems += await notices_delivered_once(databases["notify"].runtime, deliveries, answered)
    problems += await poison_dead_lettered(kafka, outcome)
    problems += await nothing_behind(ports)
    return problems


def stuck(in_progress: list[dict[str, Any]], history: list[Any]) -> list[str]:
    """In progress with nothing left to wait for: an event was lost between two services."""
    with_caseworker: set[str] = set()
    for envelope in history:
        if envelope.is_a(ApplicationReviewed):
            manual = envelope.payload(ApplicationReviewed).outcome is ReviewOutcome.NEEDS_MANUAL_REVIEW
            (with_caseworker.add if manual else with_caseworker.discard)(envelope.subject)
    return [
        f"{p['application_id']} is stuck after {p['last_type']}: nothing is waiting for a person or for money"
        for p in in_progress
        if p["last_type"] not in RESTING and p["application_id"] not in with_caseworker
    ]


async def budget_matches_log(dsn: str, history: list[Any]) -> list[str]:
    active: dict[tuple[str, int], int] = {}
    for envelope in history:  # earmarks and reservations: money held for an application
        if envelope.is_a(FundsEarmarked):
            earmarked = envelope.payload(FundsEarmarked)
            active[(earmarked.application_id, earmarked.fiscal_year)] = earmarked.amount_cents
        elif envelope.is_a(FundsReserved):
            reserved = envelope.payload(FundsReserved)
            active[(reserved.application_id, reserved.fiscal_year)] = reserved.amount_cents
        elif envelope.is_a(FundsReleased):
            released = envelope.payload(FundsReleased)
            active.pop((released.application_id, released.fiscal_year), None)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT application_id, fiscal_year, amount_cents FROM reservations WHERE status <> 'released'"
        )
        over = await conn.fetch(
            "SELECT fiscal_year FROM pots WHERE earmarked_cents + reserved_cents + committed_cents > pot_cents"
        )
    finally:
        await conn.close()
    problems = [f"pot {r['fiscal_year']}: earmarked + reserved + committed exceed the pot" for r in over]
    held = Counter((r["application_id"], r["fiscal_year"]) for r in rows)
    problems += [f"{app} holds {n} reservations for {year}" for (app, year), n in held.items() if n > 1]
    in_db = {(r["application_id"], r["fiscal_year"]): r["amount_cents"] for r in rows}
    if in_db != active:
        differ = sorted(set(in_db.items()) ^ set(active.items()))
        problems.append(f"the budget database and the log's budget events differ: {differ[:10]}")
    return problems


async def notices_delivered_once(dsn: str, deliveries: Deliveries, answered: list[str]) -> list[str]:
    """None lost: every receipt and decision on the log has its notices, each delivered, and what notify
    counts as delivered did arrive. None changed: a notice that arrived twice (a crash or a stalled
    answer) came with the same content."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT notice_id::text AS id, channel, status, cause_event_id FROM notices")
    finally:
        await conn.close()
    causes = {r["cause_event_id"] for r in rows}
    lost = [f"event {event_id} on the log has no notice" for event_id in answered if event_id not in causes]
    mails: dict[str, set[str]] = {}
    for mail in deliveries.mails:
        body = mail.get_body(("plain",)) if isinstance(mail, EmailMessage) else None
        mails.setdefault(str(mail["X-Notice-Id"]), set()).add(body.get_content() if body else "")
    problems = lost + [
        f"notice {r['id']} ({r['channel']}) ended {r['status']}" for r in rows if r["status"] != "delivered"
    ]
    for r in rows:
        arrived = r["id"] in (deliveries.callbacks.accepted if r["channel"] == "callback" else mails)
        if r["status"] == "delivered" and not arrived:
            problems.append(f"notice {r['id']} ({r['channel']}) counted as delivered but never arrived")
    twice = {**{i: len(b) for i, b in deliveries.callbacks.bodies.items()}, **{i: len(b) for i, b in mails.items()}}
    problems += [f"notice {i} arrived {n} times with different content" for i, n in twice.items() if n > 1]
    return problems


async def poison_dead_lettered(kafka: KafkaAccess, outcome: Outcome) -> list[str]:
    """Every poison record parked by every reader of its topic, and nothing else parked: a dead letter
    that is not poison is an event some service gave up on."""
    origins = {service: await dead_letter_origins(kafka, service) for service in SERVICES}
    poison = {p.where for p in outcome.poison}
    return [
        f"{p.kind} at {p.where} not dead-lettered by {reader}"
        for p in outcome.poison
        if p.kind in DEAD_LETTERED
        for reader in p.topic.readers
        if reader in origins and p.where not in origins[reader]  # the statistics app is not in these runs
    ] + [
        f"{service} dead-lettered {origin}, which is no poison"
        for service, parked in origins.items()
        for origin in sorted(parked - poison)
    ]


async def nothing_behind(ports: dict[str, int]) -> list[str]:
    """Every instance's consumers at the end of their partitions."""
    problems = []
    async with httpx.AsyncClient(timeout=5) as http:
        for instance, port in ports.items():
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            for line in text.splitlines():
                if line.startswith("egov_consumer_lag{") and float(line.rsplit(" ", 1)[1]) > 0:
                    problems.append(f"{instance} is behind: {line}")
    return problems
