"""What one fault run does, drawn from its seed alone: the applications, the withdrawals, the faults
and the poison, each at a moment (seconds after the stream starts). Pure, so a seed is replayable:
the same seed gives the same plan (the processes' own timing still varies from run to run).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    KILL = "sigkill"  # SIGKILL, restarted after ``seconds``
    PAUSE = "sigstop"  # SIGSTOP for ``seconds``, then SIGCONT (past the 6 s session timeout at times)
    # On a cluster (``cluster=3``), the node is chosen when the fault strikes (tests.faults.brokers):
    KILL_LEADER = "sigkill-leader"  # SIGKILL the leader of the busiest partition, restarted after ``seconds``
    KILL_CONTROLLER = "sigkill-controller"  # SIGKILL the active KRaft controller, restarted after ``seconds``
    PAUSE_LEADER = "sigstop-leader"  # SIGSTOP the busiest partition's leader (at times past its fencing)
    CRASH = "crash_point"  # SIGKILL at the next pass through ``point`` (runtime/crashpoints.py), restarted
    REBALANCE = "rebalance"  # a doubled service: its second instance killed and restarted, and the
    # first killed while the second rejoins the group (a crash during a rebalance)


class PoisonKind(StrEnum):
    GARBAGE = "garbage"  # bytes that are no JSON, on egov.applications.v1
    NULL_VALUE = "null_value"  # a record with a key and no value, on egov.reviews.v1
    UNKNOWN_TYPE = "unknown_type"  # a well-formed envelope of a type egov.budget.v1 does not declare
    WRONG_KEY = "wrong_key"  # a withdrawal keyed by another application's id, on egov.applications.v1
    NEAR_LIMIT = "near_limit"  # a 1,048,390-byte undecodable record on egov.submissions.v1


SERVICES = ("intake", "review", "budget", "notify")
BROKER = "broker"
DATABASE = "postgres"
# Services that may run a second instance in the same consumer group (intake's portal API stays one).
DOUBLES = ("review", "budget", "notify")
SECOND = "@2"  # the second instance of a service: "budget@2"
# Where each service may be crashed on purpose (runtime/crashpoints.py).
CRASH_POINTS = {
    "intake": ("consumer.after_commit", "outbox.after_publish", "intake.after_publish"),
    "review": ("consumer.after_commit", "outbox.after_publish"),
    "budget": ("consumer.after_commit", "outbox.after_publish"),
    "notify": ("consumer.after_commit", "outbox.after_publish", "notify.after_delivery"),
}
# A run's traffic is roughly this many records per application (received, reviewed, budget, decided,
# notices, their status-view reads): about 1 % of it is poison.
RECORDS_PER_APPLICATION = 8
DEMO_AMOUNT_CENTS = 9_600_000  # what deploy/demo/application.json asks for, in 2027
# On a cluster, a broker fault drawn as a kill or a pause strikes the busiest partition's leader.
ON_A_CLUSTER = {FaultKind.KILL: FaultKind.KILL_LEADER, FaultKind.PAUSE: FaultKind.PAUSE_LEADER}


@dataclass(frozen=True)
class Submission:
    at: float
    index: int
    ags: str


@dataclass(frozen=True)
class Withdrawal:
    index: int  # of the submission, withdrawn once accepted
    after: float  # seconds after its acceptance


@dataclass(frozen=True)
class Fault:
    at: float
    kind: FaultKind
    target: str  # a service instance ("budget", "budget@2"), the broker or the database
    seconds: float
    point: str = ""  # for a crash point: which

    @property
    def service(self) -> str:
        return self.target.removesuffix(SECOND)


@dataclass(frozen=True)
class Poison:
    at: float
    kind: PoisonKind


@dataclass(frozen=True)
class Plan:
    seed: int
    submissions: tuple[Submission, ...]
    withdrawals: tuple[Withdrawal, ...]
    faults: tuple[Fault, ...]
    poison: tuple[Poison, ...]
    pot_cents: int
    doubled: tuple[str, ...] = ()  # services running a second instance in the same group
    callback_failures: float = 0.1  # the share of webhook calls the portal's receiver fails or stalls

    @property
    def duration(self) -> float:
        moments = [s.at for s in self.submissions] + [f.at + f.seconds for f in self.faults]
        return max(moments, default=0.0)


def make_plan(seed: int, applications: int, faults: int, rate_per_second: float = 4.0, cluster: int = 1) -> Plan:
    rng = random.Random(seed)
    span = applications / rate_per_second
    submissions = tuple(
        Submission(
            at=round(rng.uniform(0, span), 3),
            index=i,
            ags=f"16{rng.randrange(10**6):06d}",
        )
        for i in range(applications)
    )
    withdrawn = rng.sample(range(applications), k=max(1, applications // 10))
    withdrawals = tuple(Withdrawal(i, round(rng.uniform(0, 5), 3)) for i in sorted(withdrawn))
    doubled = tuple(sorted(rng.sample(DOUBLES, k=rng.choice((1, 1, 2)))))
    fault_list = [draw_fault(rng, round(rng.uniform(0.1, span), 3), doubled, cluster) for _ in range(faults)]
    count = max(len(PoisonKind), applications * RECORDS_PER_APPLICATION // 100)
    kinds = [*PoisonKind, *(rng.choice(tuple(PoisonKind)) for _ in range(count - len(PoisonKind)))]
    poison = tuple(Poison(round(rng.uniform(0, span), 3), kind) for kind in kinds)
    if cluster > 1:
        fault_list += cluster_faults(rng, span)
    demand = applications * DEMO_AMOUNT_CENTS
    return Plan(
        seed=seed,
        submissions=tuple(sorted(submissions, key=lambda s: s.at)),
        withdrawals=withdrawals,
        faults=tuple(sorted(fault_list, key=lambda f: f.at)),
        poison=tuple(sorted(poison, key=lambda p: p.at)),
        pot_cents=demand * 6 // 10,  # less than asked for: the waitlist and the line are exercised
        doubled=doubled,
        callback_failures=round(rng.uniform(0.05, 0.2), 3),
    )


def cluster_faults(rng: random.Random, span: float) -> list[Fault]:
    """What every cluster run does besides its drawn faults, each in its third of the stream: kill the
    busiest partition's leader, then the active controller, then pause a leader, 2 to 12 s (the
    controller fences a broker silent for 9 s, broker.session.timeout.ms)."""
    third = span / 3
    return [
        Fault(round(rng.uniform(0.1, third), 3), FaultKind.KILL_LEADER, BROKER, round(rng.uniform(2, 8), 3)),
        Fault(round(rng.uniform(third, 2 * third), 3), FaultKind.KILL_CONTROLLER, BROKER, round(rng.uniform(2, 8), 3)),
        Fault(round(rng.uniform(2 * third, span), 3), FaultKind.PAUSE_LEADER, BROKER, round(rng.uniform(2, 12), 3)),
    ]


def draw_fault(rng: random.Random, at: float, doubled: tuple[str, ...], cluster: int = 1) -> Fault:
    """Services (each instance) far more often than the broker or the database, and of the service
    faults about a third at a crash point, so the dangerous moments come up in every few runs."""
    instances = (*SERVICES, *(d + SECOND for d in doubled))
    target = rng.choice((*instances, *instances, BROKER, DATABASE))
    if target in (BROKER, DATABASE):
        kind = rng.choice((FaultKind.KILL, FaultKind.PAUSE))
        if cluster > 1 and target == BROKER:
            kind = ON_A_CLUSTER[kind]
        return Fault(at, kind, target, round(rng.uniform(1, 4), 3))
    kinds = [FaultKind.KILL, FaultKind.PAUSE, FaultKind.CRASH]
    service = target.removesuffix(SECOND)
    if service in doubled:
        kinds.append(FaultKind.REBALANCE)
    kind = rng.choice(kinds)
    seconds = round(rng.uniform(0.5, 9), 3)
    if kind is FaultKind.CRASH:
        return Fault(at, kind, target, seconds, point=rng.choice(CRASH_POINTS[service]))
    if kind is FaultKind.REBALANCE:
        return Fault(at, kind, service, seconds)
    return Fault(at, kind, target, seconds)
