"""The whole pipeline as portals meet it: submit -> decision through all four services, the broker and
PostgreSQL on the same cores, beside the ceilings of its parts measured in the same run.

    make bench-pipeline   (or: EGOV_TEST_SLOT=3 deploy/test.sh bench tests/perf/bench_pipeline.py)

The four services run as processes (as ``make run`` starts them), the SMTP sink as a process of its
own, the load generator in this process. Phases, in order:

0. a short warm-up, then the idle stack for ~20 s (its idle cost);
1. the window burst: 600 distinct municipalities submit within ~1 s through 32 portals, ~25 M EUR
   against a 10 M EUR pot;
2. an open-loop arrival ladder: a constant arrival rate per step (send times from a schedule, latency
   counted from the scheduled time, so a slow answer does not hold the next request back); the
   ladder stops after the first step that is not sustained;
3. once the stack has worked off everything (the log stops growing), the ceilings: the broker's
   own ProducerPerformance / ConsumerPerformance at the pipeline's record count and size per
   application, pgbench on tests/perf/reservation.sql, a bare FastAPI endpoint.

"Decision" is an application's first budget outcome on the log: ``application.decided.v1``
(approved or rejected) or ``budget.waitlisted.v1`` (its told place in line), the outcome the
fair-line burst test waits for. Submit->decision is that event's ``time`` minus the scheduled send
time, both on this machine's clock, read from the log (not by polling a status).

CPU per process comes from /proc (utime + stime): each service, the broker, the PostgreSQL backends
connected to this slot's databases (the cluster's own background processes are shared with other
work and not counted), the SMTP sink, and this process (the load generator and the log reader).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import TopicPartition

from runtime.kafka import KafkaAccess, ensure_topics, make_reader
from schemas.topics import ALL_TOPICS, BUDGET, DECISIONS, Topic
from tests.conftest import issue_portal_token
from tests.perf.bench_budget import pgbench_ceiling
from tests.perf.bench_intake import Requests, Target, closed_loop, cpu_seconds, rss_mib, stop, wait_ready
from tests.support import (
    REPO,
    SECRETS_DIR,
    SERVICE_PORTS,
    TEST_SLOT,
    ServiceDatabase,
    ServiceProcesses,
    attachment_bytes,
    open_fiscal_year,
    running_services,
    sample_application,
    with_small_attachments,
)

pytestmark = pytest.mark.perf

BURST = 600
BURST_POT = 1_000_000_000  # 10 M EUR
BURST_YEAR = 2091
LADDER_YEAR = 2092
LADDER_POT = 10**13  # every ladder application is funded: the line stays short, as in steady operation
PORTALS = 32
CONNECTIONS_PER_PORTAL = 2
# Steps of the ladder (applications/s); it stops after the first step that is not sustained.
RATES = tuple(int(r) for r in os.environ.get("BENCH_RATES", "10,20,30,45,70").split(","))
HOLD_SECONDS = float(os.environ.get("BENCH_HOLD_SECONDS", "20"))
DRAIN_SECONDS = 45.0
# Sustained: every application decided, the last within this much of the last send (no growing backlog).
SUSTAINED_LAG_SECONDS = 2.0
IDLE_SECONDS = 20.0
CEILING_APPLICATIONS = 5000  # the perf tools move this many applications' worth of records
BARE_PORT = SERVICE_PORTS["intake"] + 75
SMTP_PORT = SERVICE_PORTS["notify"] + 80
OUTCOME_TYPES = ("application.decided.v1", "budget.waitlisted.v1")


# --- the portals' side -------------------------------------------------------------------------------


class Submissions:
    """Applications from distinct municipalities, 20,000 to 63,000 EUR each (below four eyes)."""

    def __init__(self) -> None:
        self.count = 0
        self.rng = random.Random(13)

    def next(self, year: int) -> tuple[bytes, list[dict[str, Any]]]:
        """The submission's body and the attachments it announces (small: uploads weigh little)."""
        self.count += 1
        requested = self.rng.randrange(2_000_000, 6_300_000, 100)
        eligible = requested * 100 // 80
        body = sample_application(
            ags=f"16{self.count:06d}",
            requested_amount_cents=requested,
            eligible_cost_cents=eligible,
            total_cost_cents=eligible,
            funding=[{"fiscal_year": year, "amount_cents": requested}],
        )
        body = with_small_attachments(body)
        return json.dumps(body).encode(), body["attachments"]


class PortalConnection:
    """One portal's keep-alive HTTP/1.1 connection to intake; just enough parsing for uvicorn's answers."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def submit(self, body: bytes, key: str) -> tuple[int, dict[str, Any]]:
        """Once more on a new connection if the server had closed the idle one: the Idempotency-Key
        makes a repeated submission the same submission."""
        request = (
            f"POST /v1/applications HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.token}\r\n"
            f"Content-Type: application/json\r\nIdempotency-Key: {key}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        try:
            return await self._exchange(request)
        except (ConnectionError, IndexError, asyncio.IncompleteReadError):
            self.close()
            return await self._exchange(request)

    async def upload(self, app_id: str, n: int, attachment: dict[str, Any]) -> int:
        """An announced attachment, on the same connection (an upload is idempotent: once more if closed)."""
        data = attachment_bytes(attachment)
        request = (
            f"PUT /v1/applications/{app_id}/attachments/{n} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {self.token}\r\nContent-Type: {attachment['media_type']}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode() + data
        try:
            status, _ = await self._exchange(request)
        except (ConnectionError, IndexError, asyncio.IncompleteReadError):
            self.close()
            status, _ = await self._exchange(request)
        return status

    async def _exchange(self, request: bytes) -> tuple[int, dict[str, Any]]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", SERVICE_PORTS["intake"])
        assert self.reader is not None
        self.writer.write(request)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) != b"\r\n":
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return status, json.loads(await self.reader.readexactly(length))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Sent:
    """What one open-loop run sent: per application its scheduled send time (epoch seconds)."""

    scheduled: dict[str, float] = field(default_factory=dict)
    received_at: dict[str, float] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    last_answer: float = 0.0


async def open_loop(portals: list[str], submissions: Submissions, year: int, rate: float, seconds: float) -> Sent:
    """Submissions on a fixed schedule over a pool of portal connections, round robin by portal."""
    pool = [PortalConnection(t) for t in portals for _ in range(CONNECTIONS_PER_PORTAL)]
    idle: asyncio.Queue[PortalConnection] = asyncio.Queue()
    for i in range(CONNECTIONS_PER_PORTAL):
        for c in pool[i::CONNECTIONS_PER_PORTAL]:
            idle.put_nowait(c)
    sent = Sent()
    start_wall, start = time.time(), time.perf_counter()

    async def one(n: int, body: bytes, attachments: list[dict[str, Any]], key: str) -> None:
        connection = await idle.get()
        status, answer = await connection.submit(body, key)
        if status == 202:  # the application is complete, and goes on to review, once its attachments are in
            for index, attachment in enumerate(attachments):
                uploaded = await connection.upload(answer["application_id"], index, attachment)
                if uploaded != 200:  # a refused upload shows among the answers; a good one is expected
                    sent.statuses[uploaded] = sent.statuses.get(uploaded, 0) + 1
        sent.statuses[status] = sent.statuses.get(status, 0) + 1
        sent.last_answer = time.time()
        if status == 202:
            sent.scheduled[answer["application_id"]] = start_wall + n / rate
            sent.received_at[answer["application_id"]] = datetime.fromisoformat(answer["received_at"]).timestamp()
        idle.put_nowait(connection)

    tasks = []
    for n in range(int(rate * seconds)):
        body, attachments = submissions.next(year)
        key = f"bench-{submissions.count}"
        await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one(n, body, attachments, key)))
    await asyncio.gather(*tasks)
    for c in pool:
        c.close()
    return sent


# --- the log's side ----------------------------------------------------------------------------------


class Outcomes:
    """Reads the budget and decision topics from where they stand now: per application the time
    of its first outcome event. Only records whose ce_type header names an outcome are parsed."""

    def __init__(self, kafka: KafkaAccess) -> None:
        self.consumer = make_reader(kafka, "bench-pipeline-outcomes")
        self.decided: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        partitions = []
        for topic in (BUDGET, DECISIONS):
            await self.consumer._client.force_metadata_update()
            partitions += [TopicPartition(topic.name, p) for p in self.consumer.partitions_for_topic(topic.name) or ()]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=500, max_records=2000)
            for records in batch.values():
                for record in records:
                    kind = dict(record.headers or ()).get("ce_type", b"").decode()
                    if kind.endswith(OUTCOME_TYPES):
                        envelope = json.loads(record.value)
                        when = datetime.fromisoformat(envelope["time"]).timestamp()
                        self.decided.setdefault(envelope["subject"], when)

    async def wait_for(self, ids: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(i in self.decided for i in ids):
                return True
            await asyncio.sleep(0.2)
        return False

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()


async def end_offsets(kafka: KafkaAccess) -> dict[TopicPartition, int]:
    consumer = make_reader(kafka, "bench-pipeline-offsets")
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [
            TopicPartition(t.name, p) for t in ALL_TOPICS for p in consumer.partitions_for_topic(t.name) or ()
        ]
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def quiet_offsets(kafka: KafkaAccess, timeout: float = 60.0) -> dict[TopicPartition, int]:
    """The log's end once nothing has been appended for 2 s: the stack has worked off what it got."""
    deadline = time.monotonic() + timeout
    last = await end_offsets(kafka)
    while time.monotonic() < deadline:
        await asyncio.sleep(2)
        now = await end_offsets(kafka)
        if now == last:
            return now
        last = now
    return last


async def records_between(
    kafka: KafkaAccess, start: dict[TopicPartition, int], end: dict[TopicPartition, int]
) -> tuple[int, float]:
    """(record count, mean value bytes) appended to every topic between two ends of the log."""
    consumer = make_reader(kafka, "bench-pipeline-sizes")
    await consumer.start()
    count, size = 0, 0
    try:
        wanted = {tp: (start.get(tp, 0), stop) for tp, stop in end.items() if stop > start.get(tp, 0)}
        consumer.assign(list(wanted))
        for tp, (first, _) in wanted.items():
            consumer.seek(tp, first)
        remaining = dict(wanted)
        while remaining:
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    if tp in remaining and record.offset < remaining[tp][1]:
                        count += 1
                        size += len(record.value)
                if tp in remaining and (records and records[-1].offset >= remaining[tp][1] - 1):
                    del remaining[tp]
    finally:
        await consumer.stop()
    return count, size / count if count else 0.0


# --- CPU and memory from /proc -----------------------------------------------------------------------


@dataclass
class Stack:
    kafka: KafkaAccess
    services: ServiceProcesses
    dsns: dict[str, str]
    admin_dsn: str
    smtp_pid: int
    broker_pid: int
    portals: list[str]


def broker_pid() -> int:
    return int((REPO / ".state" / f"test{TEST_SLOT}" / "kafka" / "kafka.pid").read_text().split()[0])


async def postgres_backends(admin_dsn: str) -> list[int]:
    conn = await asyncpg.connect(admin_dsn)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname LIKE $1", f"egov_test{TEST_SLOT}_%")
        return [r["pid"] for r in rows]
    finally:
        await conn.close()


def cpu_or_zero(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


async def cpu_snapshot(stack: Stack) -> dict[str, dict[int, float]]:
    """CPU seconds so far, per process group (name -> pid -> seconds)."""
    groups = {name: [p.pid] for name, p in stack.services.processes.items()}
    groups |= {
        "broker": [stack.broker_pid],
        "postgres": await postgres_backends(stack.admin_dsn),
        "smtp sink": [stack.smtp_pid],
        "load generator": [os.getpid()],
    }
    return {name: {pid: cpu_or_zero(pid) for pid in pids} for name, pids in groups.items()}


def cpu_used(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """Per group, CPU seconds between two snapshots (a backend that appeared meanwhile counts from zero)."""
    return {
        name: sum(s - before.get(name, {}).get(pid, 0.0) for pid, s in pids.items()) for name, pids in after.items()
    }


# --- phases ------------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    applications: int
    latencies: list[float]  # submit -> decision, seconds
    cpu: dict[str, float]
    undecided: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    rate: float = 0.0
    sustained: bool = True
    accept_seconds: float = 0.0
    last_to_decision: float = 0.0
    rss: dict[str, tuple[float, float]] = field(default_factory=dict)

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def run_phase(
    stack: Stack,
    outcomes: Outcomes,
    submissions: Submissions,
    name: str,
    year: int,
    rate: float,
    seconds: float,
    drain: float = DRAIN_SECONDS,
) -> Phase:
    before = await cpu_snapshot(stack)
    began = time.time()
    sent = await open_loop(stack.portals, submissions, year, rate, seconds)
    ids = list(sent.scheduled)
    await outcomes.wait_for(ids, drain)
    after = await cpu_snapshot(stack)
    decided = {i: outcomes.decided[i] for i in ids if i in outcomes.decided}
    last_decision = max(decided.values(), default=time.time())
    phase = Phase(
        name,
        len(ids),
        [decided[i] - sent.scheduled[i] for i in decided],
        cpu_used(before, after),
        undecided=len(ids) - len(decided),
        statuses=sent.statuses,
        rate=rate,
        accept_seconds=max(sent.received_at.values(), default=began) - began,
        last_to_decision=last_decision - max(sent.received_at.values(), default=began),
    )
    phase.sustained = (
        phase.undecided == 0 and set(sent.statuses) == {202} and phase.last_to_decision <= SUSTAINED_LAG_SECONDS
    )
    phase.rss = {n: rss_mib(p.pid) for n, p in stack.services.processes.items()}
    return phase


async def idle_cost(stack: Stack) -> dict[str, float]:
    """CPU % of one core per process group while nothing arrives."""
    before = await cpu_snapshot(stack)
    await asyncio.sleep(IDLE_SECONDS)
    used = cpu_used(before, await cpu_snapshot(stack))
    return {name: seconds / IDLE_SECONDS * 100 for name, seconds in used.items()}


# --- ceilings ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def client_config(kafka: KafkaAccess) -> Iterator[Path]:
    """The Java clients' settings for the operator principal (SCRAM over TLS), in a private temp file."""
    password = (SECRETS_DIR / "kafka" / "admin.password").read_text().strip()
    text = "\n".join(
        (
            f"bootstrap.servers={kafka.bootstrap}",
            "security.protocol=SASL_SSL",
            "sasl.mechanism=SCRAM-SHA-512",
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required"
            f' username="admin" password="{password}";',
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={SECRETS_DIR / 'tls' / 'ca.pem'}",
            "acks=all",
            "",
        )
    )
    fd, name = tempfile.mkstemp(prefix="bench-kafka-", suffix=".properties")
    try:
        os.write(fd, text.encode())
        os.close(fd)
        yield Path(name)
    finally:
        os.unlink(name)


def tools_classpath() -> str:
    done = subprocess.run([str(REPO / "deploy" / "kafka.sh"), "tools-classpath"], capture_output=True, text=True)
    assert done.returncode == 0, f"kafka.sh tools-classpath: {done.stderr}"
    return done.stdout.strip().splitlines()[-1]


def run_tool(classpath: str, tool: str, *args: str) -> str:
    done = subprocess.run(
        ["java", "-Xmx256m", "-cp", classpath, f"org.apache.kafka.tools.{tool}", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"{tool}: {done.stdout[-2000:]} {done.stderr[-2000:]}"
    return done.stdout


async def broker_ceilings(kafka: KafkaAccess, records: int, record_bytes: int) -> tuple[float, float]:
    """(producer, consumer) records/s of the broker's own perf tools, at the pipeline's record size."""
    topic = Topic(name=f"egov.bench-pipeline-perf.{int(time.time())}", key="n", event_types=(), writer="admin")
    await ensure_topics(kafka, (topic,))
    classpath = await asyncio.to_thread(tools_classpath)
    with client_config(kafka) as config:
        produced = await asyncio.to_thread(
            run_tool, classpath, "ProducerPerformance", "--topic", topic.name, "--num-records", str(records),
            "--record-size", str(record_bytes), "--throughput", "-1", "--producer.config", str(config),
        )  # fmt: skip
        consumed = await asyncio.to_thread(
            run_tool, classpath, "ConsumerPerformance", "--bootstrap-server", kafka.bootstrap, "--topic", topic.name,
            "--messages", str(records), "--consumer.config", str(config), "--timeout", "60000",
        )  # fmt: skip
    producer = float(re.findall(r"([\d.]+) records/sec", produced)[-1])
    # start, end, MB, MB/s, messages, messages/s, rebalance ms, fetch ms, fetch MB/s, fetch messages/s
    consumer = float(consumed.strip().splitlines()[-1].split(",")[-1])
    return producer, consumer


async def bare_endpoint_ceiling() -> float:
    """Requests/s of a bare FastAPI endpoint on the services' HTTP stack, 64 clients, 3 s."""
    process = subprocess.Popen([sys.executable, "-m", "tests.perf.bench_intake", str(BARE_PORT)], cwd=REPO)
    try:
        await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{BARE_PORT}/v1/applications", process)
        target, requests = Target(BARE_PORT, process.pid), Requests(BARE_PORT, "none")
        await closed_loop(target, requests, 8, 0.5)
        return (await closed_loop(target, requests, 64, 3.0)).rate
    finally:
        stop(process)


# --- the stack ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def stack(
    kafka: KafkaAccess, service_databases: dict[str, ServiceDatabase], pg_admin_dsn: str, log_dir: Path
) -> AsyncIterator[Stack]:
    mail = Path(tempfile.mkdtemp(prefix="bench-mail-"))
    sink = subprocess.Popen(
        [sys.executable, "-m", "services.notify.smtp_sink", "--port", str(SMTP_PORT), "--dir", str(mail)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    runtime = {name: database.runtime for name, database in service_databases.items()}
    owners = {name: database.owner for name, database in service_databases.items()}
    try:
        async with running_services(kafka, runtime, SMTP_PORT, log_dir, owner_dsns=owners) as services:
            portals = [await issue_portal_token(runtime["intake"], f"bench-portal-{i:02d}") for i in range(PORTALS)]
            yield Stack(kafka, services, runtime, pg_admin_dsn, sink.pid, broker_pid(), portals)
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait(10)


# --- the report --------------------------------------------------------------------------------------

GROUPS = ("intake", "review", "budget", "notify", "broker", "postgres", "smtp sink", "load generator")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}" if seconds == seconds else "-"


def print_pipeline(burst: Phase, ladder: list[Phase], idle: dict[str, float]) -> None:
    print("\n== whole pipeline (all services, broker, PostgreSQL and this load generator on the same cores) ==")
    print(
        f"window burst: {burst.applications} applications accepted in {burst.accept_seconds:.2f} s;"
        f" last submission -> last decision {burst.last_to_decision:.2f} s;"
        f" submit->decision p50 {ms(burst.quantile(0.5))} ms, p99 {ms(burst.quantile(0.99))} ms,"
        f" max {ms(max(burst.latencies, default=float('nan')))} ms; undecided {burst.undecided};"
        f" answers {dict(sorted(burst.statuses.items()))}"
    )
    print(f"\n{'arrivals/s':>10} | {'apps':>6} | {'p50 ms':>7} | {'p99 ms':>7} | {'max ms':>7} | sustained | p99<=1s")
    for p in ladder:
        print(
            f"{p.rate:>10.0f} | {p.applications:>6} | {ms(p.quantile(0.5)):>7} | {ms(p.quantile(0.99)):>7} |"
            f" {ms(max(p.latencies, default=float('nan'))):>7} | {'yes' if p.sustained else 'no':>9} |"
            f" {'yes' if p.quantile(0.99) <= 1.0 else 'no':>7}"
            + ("" if p.sustained else f"  (undecided {p.undecided}, lag {p.last_to_decision:.1f} s, {p.statuses})")
        )
    phases = [burst, *ladder]
    print("\nCPU ms per application (from /proc; phase start to last decision, idle cost included):")
    print(f"{'process':>15} | " + " | ".join(f"{p.name:>9}" for p in phases) + f" | {'idle %core':>10}")
    for group in GROUPS:
        cells = " | ".join(f"{p.cpu.get(group, 0.0) / max(p.applications, 1) * 1000:>9.1f}" for p in phases)
        print(f"{group:>15} | {cells} | {idle.get(group, 0.0):>10.2f}")
    totals = " | ".join(f"{sum(p.cpu.values()) / max(p.applications, 1) * 1000:>9.1f}" for p in phases)
    stack_idle = sum(v for k, v in idle.items() if k != "load generator")
    print(f"{'all':>15} | {totals} | {sum(idle.values()):>10.2f}")
    print(f"idle cost of the stack (services, broker, backends, sink): {stack_idle:.1f} % of one core (target <= 2 %)")
    top = ladder[-1]
    print(
        f"RSS at {top.rate:.0f}/s, MiB now/peak: "
        + ", ".join(f"{n} {now:.0f}/{peak:.0f}" for n, (now, peak) in top.rss.items())
        + " (target <= 150)"
    )


def print_ceilings(ladder: list[Phase], ceilings: dict[str, float], per_app: tuple[float, float]) -> None:
    records, size = per_app
    print(f"\nceilings, same run ({records:.1f} records of ~{size:.0f} bytes per application on the log):")
    for name, rate in ceilings.items():
        print(f"{name:>40}: {rate:>8,.0f} applications/s")
    sustained = [p.rate for p in ladder if p.sustained]
    best = max(sustained, default=0.0)
    lowest_name = min(ceilings, key=lambda k: ceilings[k])
    print(
        f"pipeline: highest sustained arrival rate {best:.0f}/s, p99 at it"
        f" {ms(next((p.quantile(0.99) for p in ladder if p.rate == best), float('nan')))} ms;"
        f" ratio to the lowest ceiling ({lowest_name}) {best / ceilings[lowest_name]:.0%}"
    )
    print("(one run on a shared machine: figures are noisy; compare ratios within a run)")


@pytest.mark.timeout(900)
async def test_the_whole_pipeline_at_speed(stack: Stack) -> None:
    began = time.monotonic()
    assert await open_fiscal_year(BURST_YEAR, BURST_POT) == 201
    assert await open_fiscal_year(LADDER_YEAR, LADDER_POT) == 201
    submissions = Submissions()
    outcomes = Outcomes(stack.kafka)
    await outcomes.start()
    try:
        # Warm-up: connections, prepared statements, caches, consumer assignments.
        await run_phase(stack, outcomes, submissions, "warm-up", LADDER_YEAR, 20, 2)
        await quiet_offsets(stack.kafka)
        idle = await idle_cost(stack)  # before the burst: nothing left over from it to work off
        start = await end_offsets(stack.kafka)
        burst = await run_phase(stack, outcomes, submissions, "burst", BURST_YEAR, BURST, 1.0, drain=120)
        end = await quiet_offsets(stack.kafka)
        count, size = await records_between(stack.kafka, start, end)
        per_app = (count / burst.applications, size)
        ladder: list[Phase] = []
        for rate in RATES:
            ladder.append(await run_phase(stack, outcomes, submissions, f"{rate}/s", LADDER_YEAR, rate, HOLD_SECONDS))
            if not ladder[-1].sustained:
                break
            await quiet_offsets(stack.kafka)
    finally:
        await outcomes.stop()
    await quiet_offsets(stack.kafka, timeout=120)  # the ceilings are measured beside an idle stack
    print_pipeline(burst, ladder, idle)
    records = round(CEILING_APPLICATIONS * per_app[0])
    producer, consumer = await broker_ceilings(stack.kafka, records, round(size))
    ceilings = {
        "broker ProducerPerformance (acks=all)": producer / per_app[0],
        "broker ConsumerPerformance": consumer / per_app[0],
        "pgbench, reservation SQL, 2 clients": await pgbench_ceiling(stack.admin_dsn),
        "bare FastAPI endpoint, 64 clients": await bare_endpoint_ceiling(),
    }
    print_ceilings(ladder, ceilings, per_app)
    print(f"bench took {time.monotonic() - began:.0f} s")
    assert burst.undecided == 0, f"{burst.undecided} burst applications without a decision"
    assert statistics.median(burst.latencies) > 0
