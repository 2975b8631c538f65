"""The fault driver: the four services as processes against a private broker and databases of their own,
a stream of applications and withdrawals, and a seeded schedule of SIGKILLs, SIGSTOPs and poison.

    make faults SEED=1234 RUNS=3 [APPLICATIONS=80 FAULTS=4 SLOT=9 CLUSTER=3]   (deploy/faults.sh)

Every run prints its seed; run i of ``--seed S`` uses seed S + i, so one run replays with
``--seed S+i --runs 1``. Everything listens on loopback; the broker, the service ports and the
databases (``egov_faults<slot>_*``) belong to the slot, so the run disturbs no other tree and no test
suite. With ``--cluster 3`` the broker is a three-node KRaft cluster and the plan adds its faults
(``tests.faults.brokers``). After the stream the driver waits until the pipeline is quiet and checks
(``tests.faults.checks``):
the audit over the log (``python -m audit verify``), the budget database against the log, and that
every poison record was dead-lettered by every reader (or, for an unknown type, reported by the audit).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
from aiokafka.errors import KafkaError

from runtime.kafka import KafkaAccess, ensure_topics, make_producer
from schemas.envelope import Envelope, Event, utc_now
from schemas.events import ApplicationWithdrawn
from schemas.topics import ALL_TOPICS, APPLICATIONS, BUDGET, REVIEWS, SUBMISSIONS
from services.notify.endpoints import register
from tests.conftest import issue_portal_token
from tests.faults import checks
from tests.faults.brokers import Brokers
from tests.faults.database import PrivatePostgres
from tests.faults.mutants import MUTANTS
from tests.faults.plan import BROKER, DATABASE, SECOND, SERVICES, Fault, FaultKind, Plan, PoisonKind, make_plan
from tests.faults.receiver import CALLBACK_TIMEOUT_SECONDS, CallbackReceiver
from tests.support import (
    ADMIN_TOKEN,
    REPO,
    SERVICE_PORTS,
    SMTP_TEST_PORT,
    ServiceProcesses,
    SmtpSink,
    as_principal,
    attachment_bytes,
    kafka_access,
    sample_application,
    service_database,
    with_small_attachments,
)

if TYPE_CHECKING:
    from schemas.topics import Topic
    from tests.support import ServiceDatabase

SUBMIT_PATIENCE_SECONDS = 120  # a submission retried this long (same key) without a 202 is reported
PORTAL = "portal-faults"
NEAR_LIMIT_BYTES = 1_048_390
CRASH_PATIENCE_SECONDS = 30  # an armed crash point not passed by then is disarmed and reported
REJOIN_SECONDS = 1.5  # into a rebalance: the restarted instance is joining the group by then
RECOVERY_PATIENCE_SECONDS = 120
LAG = "egov_consumer_lag{"
NOT_REACHED = "not reached, disarmed"
LATE_ARRIVAL = "arrived behind its partition's frontier"  # services/budget/arrivals.py


@dataclass(frozen=True)
class Slot:
    number: int

    @property
    def state(self) -> Path:
        return REPO / ".state" / f"faults{self.number}"

    @property
    def broker_port(self) -> int:
        return 29600 + 10 * self.number

    @property
    def http_ports(self) -> dict[str, int]:
        return {name: port + 80 for name, port in SERVICE_PORTS.items()}

    @property
    def smtp_port(self) -> int:
        return SMTP_TEST_PORT + 80

    @property
    def callback_port(self) -> int:
        return SMTP_TEST_PORT + 81

    def postgres(self, shared_admin_dsn: str) -> PrivatePostgres:
        return PrivatePostgres(self.state / "postgres", 55440 + self.number, shared_admin_dsn)


@dataclass
class Outcome:
    """What the portal side saw: a 202 (accepted) or nothing settled within the patience."""

    accepted: dict[int, str] = field(default_factory=dict)  # submission index -> application id
    unsettled: list[int] = field(default_factory=list)
    withdrawn: set[str] = field(default_factory=set)
    poison: list[checks.Injected] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    recoveries: list[Recovery] = field(default_factory=list)


@dataclass(frozen=True)
class Recovery:
    """How long one fault took to heal, from its end: until the target served again (healthy), and
    until every consumer had caught up with the log (backlog handled)."""

    kind: str  # "sigkill budget", "crash_point consumer.after_commit", "sigstop postgres", ...
    healthy_seconds: float
    caught_up_seconds: float | None  # None: not caught up before the next fault or the settle timeout


class Run:
    def __init__(
        self, plan: Plan, slot: Slot, postgres: PrivatePostgres, mutant: str | None = None, cluster: int = 1
    ) -> None:
        self.plan, self.slot, self.postgres, self.mutant = plan, slot, postgres, mutant
        self.admin_dsn = postgres.admin_dsn
        self.brokers = Brokers(slot.state, slot.broker_port, cluster)
        self.receiver = CallbackReceiver(slot.callback_port, plan.callback_failures, plan.seed)
        self.outcome = Outcome()
        self.log_dir = slot.state / f"run-{plan.seed}"
        self.started = 0.0
        self.kafka: KafkaAccess
        self.services: ServiceProcesses
        self.databases: dict[str, ServiceDatabase] = {}
        self.token = ""
        self.busy: set[str] = set()  # targets under a fault right now
        self.frozen_database: list[int] = []

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.slot.http_ports[service]}{path}"

    @property
    def instances(self) -> tuple[str, ...]:
        return (*SERVICES, *(d + SECOND for d in self.plan.doubled))

    async def at(self, moment: float) -> None:
        await asyncio.sleep(max(0.0, self.started + moment - time.monotonic()))

    # --- set-up and tear-down ----------------------------------------------------------------------

    async def set_up(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        await self.brokers.start()
        self.kafka = kafka_access(self.brokers.bootstrap)
        await ensure_topics(self.kafka, ALL_TOPICS, self.brokers.replication)
        databases = {s: await service_database(self.admin_dsn, f"egov_faults{self.slot.number}_{s}") for s in SERVICES}
        self.services = ServiceProcesses(
            self.kafka,
            {s: d.runtime for s, d in databases.items()},
            self.slot.smtp_port,
            self.log_dir,
            owner_dsns={s: d.owner for s, d in databases.items()},
            http_ports=self.slot.http_ports,
            extra_env=self.service_env(),
            crash_points=self.log_dir / "crash-points",
        )
        # The first instances migrate; a second one starts on a migrated database.
        await self.services.start_ready(*SERVICES)
        await self.services.start_ready(*self.instances[len(SERVICES) :])
        self.token = await issue_portal_token(databases["intake"].runtime, PORTAL)
        await self.receiver.start()
        conn = await asyncpg.connect(databases["notify"].runtime)
        try:  # the portal takes callbacks too, so deliveries to a misbehaving endpoint are exercised
            await register(conn, PORTAL, self.receiver.url, allow_loopback=True)
        finally:
            await conn.close()
        async with httpx.AsyncClient(timeout=10) as http:
            opened = await http.post(
                self.url("budget", "/v1/fiscal-years"),
                json={"fiscal_year": 2027, "pot_cents": self.plan.pot_cents},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
        if opened.status_code != 201:
            raise RuntimeError(f"could not open 2027: {opened.status_code} {opened.text}")
        self.databases = databases

    def service_env(self) -> dict[str, str]:
        env = {"NOTIFY_CALLBACK_TIMEOUT_SECONDS": str(CALLBACK_TIMEOUT_SECONDS)}
        if self.mutant:  # tests/faults/mutants: a broken guarantee the checks must catch
            env["PYTHONPATH"] = str(REPO / "tests" / "faults" / "mutants")
            env["EGOV_FAULTS_MUTANT"] = self.mutant
        return env

    async def tear_down(self) -> None:
        await self.receiver.stop()
        services: ServiceProcesses | None = getattr(self, "services", None)
        if services is not None:
            for process in services.processes.values():  # a paused one would not hear its SIGTERM
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGCONT)
            await services.stop_all()
        await self.brokers.stop()
        if self.frozen_database:
            self.postgres.resume(self.frozen_database)

    # --- the portal: submissions and withdrawals ---------------------------------------------------

    async def submit(self, http: httpx.AsyncClient, index: int, ags: str, at: float) -> None:
        await self.at(at)
        body = with_small_attachments(
            sample_application(ags=ags, title=f"Fault run {self.plan.seed} application {index}")
        )
        headers = {"Authorization": f"Bearer {self.token}", "Idempotency-Key": f"faults-{self.plan.seed}-{index}"}
        deadline = time.monotonic() + SUBMIT_PATIENCE_SECONDS
        while time.monotonic() < deadline:
            try:
                answer = await http.post(self.url("intake", "/v1/applications"), json=body, headers=headers)
            except httpx.HTTPError:
                await asyncio.sleep(1)
                continue
            if answer.status_code == 202:
                self.outcome.accepted[index] = answer.json()["application_id"]
                await self.upload(
                    http, answer.json()["application_id"], body, time.monotonic() + SUBMIT_PATIENCE_SECONDS
                )
                await self.withdraw_if_planned(http, index)
                return
            if answer.status_code not in (429, 503):
                raise RuntimeError(f"submission {index}: {answer.status_code} {answer.text}")
            await asyncio.sleep(float(answer.headers.get("retry-after", "1")))
        self.outcome.unsettled.append(index)

    async def upload(self, http: httpx.AsyncClient, app_id: str, body: dict[str, Any], deadline: float) -> None:
        """Every announced attachment, as a portal uploads it after its 202, retried through the faults
        (an upload is idempotent); one never complete is found stuck by the checks."""
        for n, attachment in enumerate(body["attachments"]):
            headers = {"Authorization": f"Bearer {self.token}", "Content-Type": attachment["media_type"]}
            url = self.url("intake", f"/v1/applications/{app_id}/attachments/{n}")
            while time.monotonic() < deadline:
                try:
                    answer = await http.put(url, content=attachment_bytes(attachment), headers=headers)
                except httpx.HTTPError:
                    await asyncio.sleep(1)
                    continue
                if answer.status_code == 200:
                    break
                if answer.status_code not in (404, 429, 503):  # 404: its status row is not written yet
                    raise RuntimeError(f"upload {app_id}/{n}: {answer.status_code} {answer.text}")
                await asyncio.sleep(float(answer.headers.get("retry-after", "1")))

    async def withdraw_if_planned(self, http: httpx.AsyncClient, index: int) -> None:
        planned = [w for w in self.plan.withdrawals if w.index == index]
        if not planned:
            return
        await asyncio.sleep(planned[0].after)
        app_id = self.outcome.accepted[index]
        deadline = time.monotonic() + SUBMIT_PATIENCE_SECONDS
        while time.monotonic() < deadline:
            try:
                answer = await http.post(
                    self.url("intake", f"/v1/applications/{app_id}/withdrawal"),
                    headers={"Authorization": f"Bearer {self.token}"},
                )
            except httpx.HTTPError:
                await asyncio.sleep(1)
                continue
            if answer.status_code == 202 or answer.json().get("code") == "application.withdrawn":
                self.outcome.withdrawn.add(app_id)
                return
            if answer.status_code == 409:  # decided before the withdrawal: nothing to withdraw
                return
            await asyncio.sleep(1)

    # --- faults and poison -------------------------------------------------------------------------

    async def inject_fault(self, fault: Fault) -> None:
        await self.at(fault.at)
        what = f"{fault.kind} {fault.target}" + (f" at {fault.point}" if fault.point else "")
        moment = f"{time.monotonic() - self.started:6.1f}s {what} for {fault.seconds}s"
        hit = {fault.target, fault.target + SECOND} if fault.kind is FaultKind.REBALANCE else {fault.target}
        if hit & self.busy or not all(t in (BROKER, DATABASE) or t in self.services.processes for t in hit):
            self.outcome.faults.append(f"{moment}: skipped, still down from an earlier fault")
            return
        self.busy |= hit
        try:
            note = await self.apply(fault)
        finally:
            self.busy -= hit
        self.outcome.faults.append(moment + (f": {note}" if note else ""))
        if note != NOT_REACHED:
            self.outcome.recoveries.append(await self.recovery(f"{fault.kind} {fault.point or fault.target}", fault))

    async def apply(self, fault: Fault) -> str:
        if fault.target == BROKER:  # which node it hit (on a cluster, chosen now) and when it was back
            return await self.brokers.inject(fault.kind, fault.seconds)
        if fault.target == DATABASE:
            await self.database_fault(fault)
        elif fault.kind is FaultKind.CRASH:
            return await self.crash_at(fault)
        elif fault.kind is FaultKind.REBALANCE:
            await self.crash_during_rebalance(fault)
        elif fault.kind is FaultKind.KILL:
            await self.services.stop(fault.target, signal.SIGKILL)
            await asyncio.sleep(fault.seconds)
            await self.restart(fault.target)
        else:
            process = self.services.processes[fault.target]
            process.send_signal(signal.SIGSTOP)
            await asyncio.sleep(fault.seconds)
            process.send_signal(signal.SIGCONT)
        return ""

    async def restart(self, *instances: str) -> None:
        await self.services.start_ready(*instances, timeout=120)

    async def database_fault(self, fault: Fault) -> None:
        if fault.kind is FaultKind.KILL:
            await asyncio.to_thread(self.postgres.kill)
            await asyncio.sleep(fault.seconds)
            await asyncio.to_thread(self.postgres.start)  # crash recovery from the WAL
            return
        self.frozen_database = await asyncio.to_thread(self.postgres.pause)
        await asyncio.sleep(fault.seconds)
        self.postgres.resume(self.frozen_database)
        self.frozen_database = []

    async def crash_at(self, fault: Fault) -> str:
        """Arm the point and wait for the instance to die there; a supervisor would restart it at once."""
        armed = self.log_dir / "crash-points" / fault.target / fault.point
        armed.touch()
        process = self.services.processes[fault.target]
        deadline = time.monotonic() + CRASH_PATIENCE_SECONDS
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if process.poll() is None:
            armed.unlink(missing_ok=True)
            return NOT_REACHED
        await self.services.stop(fault.target)
        await asyncio.sleep(min(fault.seconds, 2.0))
        await self.restart(fault.target)
        return f"died there (exit {process.returncode})"

    async def crash_during_rebalance(self, fault: Fault) -> None:
        """The second instance goes and comes back; while the group moves its partitions back, the
        first one dies too."""
        second = fault.target + SECOND
        await self.services.stop(second, signal.SIGKILL)
        self.services.start(second)
        await asyncio.sleep(REJOIN_SECONDS)
        await self.services.stop(fault.target, signal.SIGKILL)
        await asyncio.sleep(fault.seconds)
        self.services.start(fault.target)
        await asyncio.gather(*(self.services.wait_ready(name, timeout=120) for name in (fault.target, second)))

    async def recovery(self, kind: str, fault: Fault) -> Recovery:
        """From the fault's end: until its target answers /ready (every instance, for the broker and the
        database), then until no consumer is behind."""
        ended = time.monotonic()
        targets = [fault.target] if fault.target in self.services.processes else list(self.instances)
        healthy: float | None = None
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() - ended < RECOVERY_PATIENCE_SECONDS:
                if healthy is None and await self.all_ready(http, targets):
                    healthy = time.monotonic() - ended
                if healthy is not None and await self.behind(http) == 0:
                    return Recovery(kind, healthy, time.monotonic() - ended)
                await asyncio.sleep(0.25)
        return Recovery(kind, healthy if healthy is not None else RECOVERY_PATIENCE_SECONDS, None)

    async def all_ready(self, http: httpx.AsyncClient, instances: list[str]) -> bool:
        for name in instances:
            try:
                port = self.services.port_of(name)
                if (await http.get(f"http://127.0.0.1:{port}/ready")).status_code != 200:
                    return False
            except httpx.HTTPError:
                return False
        return True

    async def behind(self, http: httpx.AsyncClient) -> float:
        total = 0.0
        for name in list(self.services.processes):
            try:
                text = (await http.get(f"http://127.0.0.1:{self.services.port_of(name)}/metrics")).text
            except httpx.HTTPError:
                return float("inf")
            total += sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(LAG))
        return total

    async def inject_poison(self, at: float, kind: PoisonKind) -> None:
        await self.at(at)
        topic, key, value = poison_record(kind, self.plan.seed, len(self.outcome.poison))
        writer = as_principal(self.kafka, "portal.portal-a") if topic is SUBMISSIONS else self.kafka
        deadline = time.monotonic() + SUBMIT_PATIENCE_SECONDS
        while True:  # the broker may be down or paused by a fault just now
            producer = make_producer(writer, "faults-poison")
            try:
                await producer.start()
                sent = await producer.send_and_wait(topic.name, value, key=key)
                break
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1)
            finally:
                await producer.stop()
        self.outcome.poison.append(checks.Injected(kind, topic, sent.partition, sent.offset))

    # --- the run -----------------------------------------------------------------------------------

    async def drive(self) -> None:
        self.started = time.monotonic()
        async with httpx.AsyncClient(timeout=10) as http:
            await asyncio.gather(
                *(self.submit(http, s.index, s.ags, s.at) for s in self.plan.submissions),
                *(self.inject_fault(f) for f in self.plan.faults),
                *(self.inject_poison(p.at, p.kind) for p in self.plan.poison),
            )

    def late_arrivals(self) -> set[str]:
        """The applications every budget instance logged as arriving behind its partition's frontier."""
        late = set()
        for log_file in self.log_dir.glob("budget*.log"):
            for line in log_file.read_text(errors="replace").splitlines():
                if LATE_ARRIVAL in line:
                    with contextlib.suppress(ValueError, KeyError):
                        late.add(json.loads(line)["correlation_id"])
        return late

    async def notices_pending(self) -> int:
        conn = await asyncpg.connect(self.databases["notify"].runtime)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM notices WHERE status = 'pending'"))
        finally:
            await conn.close()

    async def settle(self, timeout: float = 240) -> bool:
        """Until every service is ready, the log has not grown for three polls in a row and notify has
        nothing left to deliver."""
        deadline, quiet, last = time.monotonic() + timeout, 0, -1
        async with httpx.AsyncClient(timeout=5) as http, checks.log_size(self.kafka) as log_size:
            while time.monotonic() < deadline:
                await asyncio.sleep(3)
                ready = True
                for name in SERVICES:
                    with contextlib.suppress(httpx.HTTPError):
                        ready &= (await http.get(self.url(name, "/ready"))).status_code == 200
                        continue
                    ready = False
                size = await log_size()
                with contextlib.suppress(OSError, asyncpg.PostgresError):
                    ready &= await self.notices_pending() == 0
                quiet = quiet + 1 if ready and size == last else 0
                last = size
                if quiet >= 3:
                    return True
        return False


def poison_record(kind: PoisonKind, seed: int, n: int) -> tuple[Topic, bytes, bytes | None]:
    marker = f"poison-{seed}-{n}"
    if kind is PoisonKind.GARBAGE:
        return APPLICATIONS, marker.encode(), b"\x00\xff " + marker.encode()
    if kind is PoisonKind.NULL_VALUE:
        return REVIEWS, marker.encode(), None
    if kind is PoisonKind.UNKNOWN_TYPE:
        subject = f"TH-EGOV-2099-{900000 + n}"
        envelope = Envelope(
            id=str(uuid.uuid4()),
            source="/faults",
            type="de.thueringen.egov.budget.teleported.v1",
            subject=subject,
            time=utc_now(),
            correlationid=subject,
            data={"marker": marker},
        )
        return BUDGET, subject.encode(), envelope.to_bytes()
    if kind is PoisonKind.WRONG_KEY:
        subject = f"TH-EGOV-2099-{800000 + n}"
        event: Event = ApplicationWithdrawn(application_id=subject, portal_id=PORTAL)
        envelope = Envelope.wrap(event, source="/egov/intake", subject=subject, actor=f"portal:{PORTAL}")
        return APPLICATIONS, f"TH-EGOV-2099-{700000 + n}".encode(), envelope.to_bytes()
    return SUBMISSIONS, marker.encode(), b"\xff" + os.urandom(NEAR_LIMIT_BYTES - 1)


@dataclass(frozen=True)
class RunResult:
    problems: list[str]
    recoveries: list[Recovery]


async def one_run(
    seed: int, slot: Slot, postgres: PrivatePostgres, sink: SmtpSink, args: argparse.Namespace
) -> RunResult:
    plan = make_plan(seed, args.applications, args.faults, cluster=args.cluster)
    if args.fault:  # a schedule given by hand replaces the seed's faults (the rest stays seeded)
        plan = dataclasses.replace(plan, faults=tuple(sorted(args.fault, key=lambda f: f.at)))
    run = Run(plan, slot, postgres, mutant=args.mutant, cluster=args.cluster)
    doubled = ", ".join(plan.doubled)
    print(
        f"run seed={seed}: {args.applications} applications, {len(plan.faults)} faults, {len(plan.poison)} poison,"
        f" second instance of {doubled}" + (f", MUTANT {args.mutant}" if args.mutant else ""),
        flush=True,
    )
    sink.messages.clear()
    try:
        await run.set_up()
        await run.drive()
        settled = await run.settle(args.settle_seconds)
        for line in run.outcome.faults:
            print(f"  fault {line}")
        problems = [] if settled else [f"the pipeline did not settle within {args.settle_seconds} s"]
        ports = {name: run.services.port_of(name) for name in run.instances}
        deliveries = checks.Deliveries(run.receiver, sink.messages, run.late_arrivals())
        problems += await checks.check(run.kafka, run.databases, run.outcome, ports, deliveries)
        if args.cluster > 1:
            problems += await run.brokers.replication_problems()
    finally:
        await run.tear_down()
    accepted, withdrawn = len(run.outcome.accepted), len(run.outcome.withdrawn)
    print(f"  accepted {accepted}, withdrawn {withdrawn}, unsettled {len(run.outcome.unsettled)},")
    print(f"  {len(sink.messages)} mails, {run.receiver.calls} callback calls ({len(run.receiver.accepted)} notices)")
    for problem in problems:
        print(f"  VIOLATION {problem}")
    print(f"  seed={seed}: {'ok' if not problems else f'{len(problems)} violation(s)'}; logs in {run.log_dir}")
    return RunResult(problems, run.outcome.recoveries)


def recovery_table(recoveries: list[Recovery]) -> list[str]:
    """Per fault kind: how many, and the median and worst seconds until healthy and until caught up."""
    kinds: dict[str, list[Recovery]] = {}
    for r in recoveries:
        kinds.setdefault(r.kind, []).append(r)
    lines = [f"  {'fault':<36} {'n':>3} {'healthy p50/max s':>18} {'caught up p50/max s':>20}"]
    for kind, rs in sorted(kinds.items()):
        healthy = sorted(r.healthy_seconds for r in rs)
        caught = sorted(r.caught_up_seconds for r in rs if r.caught_up_seconds is not None)
        late = len(rs) - len(caught)
        up = f"{statistics.median(caught):.1f}/{caught[-1]:.1f}" if caught else "-"
        up += f" ({late} late)" if late else ""
        lines.append(f"  {kind:<36} {len(rs):>3} {statistics.median(healthy):>9.1f}/{healthy[-1]:<8.1f} {up:>20}")
    return lines


async def main_async(args: argparse.Namespace) -> int:
    slot = Slot(args.slot)
    postgres = slot.postgres(os.environ["EGOV_TEST_PG_DSN"])
    print(
        f"make faults SEED={args.seed} RUNS={args.runs} APPLICATIONS={args.applications} FAULTS={args.faults}"
        f" CLUSTER={args.cluster}"
    )
    failed, recoveries = [], []
    sink = SmtpSink(slot.smtp_port)
    await asyncio.to_thread(postgres.start)
    await sink.start()
    try:
        for i in range(args.runs):
            try:
                result = await one_run(args.seed + i, slot, postgres, sink, args)
            except Exception as err:  # noqa: BLE001 - a run that breaks down is a failed seed, the next runs
                print(f"  seed={args.seed + i}: the run broke down: {err!r}")
                result = RunResult([repr(err)], [])
            recoveries += result.recoveries
            if result.problems:
                failed.append(args.seed + i)
    finally:
        await sink.stop()
        await asyncio.to_thread(postgres.stop)
    print("recovery, from the end of each fault:")
    print("\n".join(recovery_table(recoveries)))
    summary = {"seed": args.seed, "runs": args.runs, "failed_seeds": failed}
    print(json.dumps(summary))
    return 1 if failed else 0


def given_fault(text: str) -> Fault:
    """KIND:TARGET[:POINT]@AT[+SECONDS], e.g. crash_point:budget:consumer.after_commit@3 or sigkill:postgres@5+2."""
    what, _, when = text.partition("@")
    kind, target, *point = what.split(":")
    at, _, seconds = when.partition("+")
    return Fault(float(at or 0), FaultKind(kind), target, float(seconds or 2), point[0] if point else "")


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # a broker killed on purpose is no news
    cli = argparse.ArgumentParser(prog="python -m tests.faults.driver", description=__doc__.split("\n")[0])
    cli.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(4), "big"))
    cli.add_argument("--runs", type=int, default=1)
    cli.add_argument("--applications", type=int, default=60)
    cli.add_argument("--faults", type=int, default=4)
    cli.add_argument("--cluster", type=int, choices=(1, 3), default=1, help="brokers: one, or a KRaft cluster")
    cli.add_argument("--slot", type=int, default=int(os.environ.get("EGOV_TEST_SLOT", "9")))
    cli.add_argument("--settle-seconds", type=float, default=240, help="how long the pipeline may take to go quiet")
    cli.add_argument("--fault", type=given_fault, action="append", help=given_fault.__doc__)
    cli.add_argument("--mutant", choices=MUTANTS, help="run with a broken guarantee: the checks must fail")
    return asyncio.run(main_async(cli.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
