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
import json
import logging
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from aiokafka.errors import KafkaError

from runtime.kafka import KafkaAccess, ensure_topics, make_producer
from schemas.envelope import Envelope, Event, utc_now
from schemas.events import ApplicationWithdrawn
from schemas.topics import ALL_TOPICS, APPLICATIONS, BUDGET, REVIEWS, SUBMISSIONS
from tests.conftest import issue_portal_token
from tests.faults import checks
from tests.faults.brokers import Brokers
from tests.faults.plan import BROKER, SERVICES, FaultKind, Plan, PoisonKind, make_plan
from tests.support import (
    ADMIN_TOKEN,
    REPO,
    SERVICE_PORTS,
    SMTP_TEST_PORT,
    ServiceProcesses,
    SmtpSink,
    as_principal,
    kafka_access,
    sample_application,
    service_database,
)

if TYPE_CHECKING:
    from schemas.topics import Topic
    from tests.support import ServiceDatabase

SUBMIT_PATIENCE_SECONDS = 120  # a submission retried this long (same key) without a 202 is reported
PORTAL = "portal-faults"
NEAR_LIMIT_BYTES = 1_048_390


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


@dataclass
class Outcome:
    """What the portal side saw: a 202 (accepted) or nothing settled within the patience."""

    accepted: dict[int, str] = field(default_factory=dict)  # submission index -> application id
    unsettled: list[int] = field(default_factory=list)
    withdrawn: set[str] = field(default_factory=set)
    poison: list[checks.Injected] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)


class Run:
    def __init__(self, plan: Plan, slot: Slot, admin_dsn: str, cluster: int = 1) -> None:
        self.plan, self.slot, self.admin_dsn = plan, slot, admin_dsn
        self.brokers = Brokers(slot.state, slot.broker_port, cluster)
        self.outcome = Outcome()
        self.log_dir = slot.state / f"run-{plan.seed}"
        self.started = 0.0
        self.kafka: KafkaAccess
        self.services: ServiceProcesses
        self.databases: dict[str, ServiceDatabase] = {}
        self.token = ""

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.slot.http_ports[service]}{path}"

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
        )
        for name in SERVICES:
            self.services.start(name)
        await asyncio.gather(*(self.services.wait_ready(name) for name in SERVICES))
        self.token = await issue_portal_token(databases["intake"].runtime, PORTAL)
        async with httpx.AsyncClient(timeout=10) as http:
            opened = await http.post(
                self.url("budget", "/v1/fiscal-years"),
                json={"fiscal_year": 2027, "pot_cents": self.plan.pot_cents},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
        if opened.status_code != 201:
            raise RuntimeError(f"could not open 2027: {opened.status_code} {opened.text}")
        self.databases = databases

    async def tear_down(self) -> None:
        services: ServiceProcesses | None = getattr(self, "services", None)
        if services is not None:
            for process in services.processes.values():  # a paused one would not hear its SIGTERM
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGCONT)
            await services.stop_all()
        await self.brokers.stop()

    # --- the portal: submissions and withdrawals ---------------------------------------------------

    async def submit(self, http: httpx.AsyncClient, index: int, ags: str, at: float) -> None:
        await self.at(at)
        body = sample_application(ags=ags, title=f"Fault run {self.plan.seed} application {index}")
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
                await self.withdraw_if_planned(http, index)
                return
            if answer.status_code not in (429, 503):
                raise RuntimeError(f"submission {index}: {answer.status_code} {answer.text}")
            await asyncio.sleep(float(answer.headers.get("retry-after", "1")))
        self.outcome.unsettled.append(index)

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

    async def inject_fault(self, at: float, kind: FaultKind, target: str, seconds: float) -> None:
        await self.at(at)
        moment = f"{time.monotonic() - self.started:6.1f}s {kind} {target} for {seconds}s"
        if target != BROKER and target not in self.services.processes:
            self.outcome.faults.append(f"{moment}: skipped, still down from an earlier fault")
            return
        self.outcome.faults.append(moment)
        if target == BROKER:  # it says which node it hit (on a cluster, chosen now) and when it was back
            line = len(self.outcome.faults) - 1
            self.outcome.faults[line] += f": {await self.brokers.inject(kind, seconds)}"
            return
        if kind is FaultKind.KILL:
            await self.services.stop(target, signal.SIGKILL)
            await asyncio.sleep(seconds)
            self.services.start(target)
            await self.services.wait_ready(target, timeout=120)
        else:
            process = self.services.processes[target]
            process.send_signal(signal.SIGSTOP)
            await asyncio.sleep(seconds)
            process.send_signal(signal.SIGCONT)

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
                *(self.inject_fault(f.at, f.kind, f.target, f.seconds) for f in self.plan.faults),
                *(self.inject_poison(p.at, p.kind) for p in self.plan.poison),
            )

    async def settle(self, timeout: float = 240) -> bool:
        """Until every service is ready and the log has not grown for three polls in a row."""
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


async def one_run(seed: int, slot: Slot, admin_dsn: str, applications: int, faults: int, cluster: int = 1) -> list[str]:
    plan = make_plan(seed, applications, faults, cluster=cluster)
    run = Run(plan, slot, admin_dsn, cluster)
    print(f"run seed={seed}: {applications} applications, {len(plan.faults)} faults, {len(plan.poison)} poison")
    try:
        await run.set_up()
        await run.drive()
        settled = await run.settle()
        for line in run.outcome.faults:
            print(f"  fault {line}")
        problems = [] if settled else ["the pipeline did not settle within 240 s"]
        problems += await checks.check(run.kafka, run.databases, run.outcome, slot.http_ports)
        if cluster > 1:
            problems += await run.brokers.replication_problems()
    finally:
        await run.tear_down()
    accepted, withdrawn = len(run.outcome.accepted), len(run.outcome.withdrawn)
    print(f"  accepted {accepted}, withdrawn {withdrawn}, unsettled {len(run.outcome.unsettled)}")
    for problem in problems:
        print(f"  VIOLATION {problem}")
    print(f"  seed={seed}: {'ok' if not problems else f'{len(problems)} violation(s)'}; logs in {run.log_dir}")
    return problems


async def main_async(args: argparse.Namespace) -> int:
    slot = Slot(args.slot)
    admin_dsn = os.environ["EGOV_TEST_PG_DSN"]
    print(
        f"make faults SEED={args.seed} RUNS={args.runs} APPLICATIONS={args.applications} FAULTS={args.faults}"
        f" CLUSTER={args.cluster}"
    )
    failed = []
    sink = SmtpSink(slot.smtp_port)
    await sink.start()
    try:
        for i in range(args.runs):
            try:
                problems = await one_run(args.seed + i, slot, admin_dsn, args.applications, args.faults, args.cluster)
            except Exception as err:  # noqa: BLE001 - a run that breaks down is a failed seed, the next runs
                print(f"  seed={args.seed + i}: the run broke down: {err!r}")
                problems = [repr(err)]
            if problems:
                failed.append(args.seed + i)
    finally:
        await sink.stop()
    summary = {"seed": args.seed, "runs": args.runs, "failed_seeds": failed}
    print(json.dumps(summary))
    return 1 if failed else 0


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
    return asyncio.run(main_async(cli.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
