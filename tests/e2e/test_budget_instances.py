"""Two budget instances in one consumer group, fed through the real broker: the race in order,
and SIGKILLs at random moments during 2,000 eligible applications."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka.partitioner import murmur2

from runtime.db import create_pool
from runtime.kafka import KafkaAccess, make_producer, publish
from schemas.envelope import Envelope
from schemas.events import ApplicationDecided, ApplicationWaitlisted, ReviewOutcome
from schemas.topics import APPLICATIONS, BUDGET, DECISIONS, REVIEWS, Topic
from tests.integration.budget_support import app_id, assert_invariants, received, reviewed
from tests.support import (
    ADMIN_TOKEN,
    SERVICE_PORTS,
    TEST_SLOT,
    StandInIntake,
    fresh_database,
    private_broker,
    read_topic,
    service_kafka_env,
    spawn_service,
    wait_http_ready,
)

pytestmark = pytest.mark.e2e

PORTS = (SERVICE_PORTS["budget"] + 50, SERVICE_PORTS["budget"] + 51)


class BudgetInstances:
    def __init__(self, kafka: KafkaAccess, dsn: str, log_dir: Path) -> None:
        self.kafka, self.dsn, self.log_dir = kafka, dsn, log_dir
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.stand_in = StandInIntake(kafka)

    def env(self, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BUDGET_")}
        env.update(
            {
                **service_kafka_env(self.kafka, "budget"),
                "BUDGET_DATABASE_URL": self.dsn,
                "BUDGET_HTTP_PORT": str(port),
                "BUDGET_ENVIRONMENT": "test",
                "BUDGET_ADMIN_TOKEN": ADMIN_TOKEN,
                "BUDGET_CONSUMER_GROUP_PREFIX": "instances-",
                "BUDGET_KAFKA_SESSION_TIMEOUT_MS": "6000",
            }
        )
        return env

    async def start(self, port: int) -> None:
        self.processes[port] = spawn_service("budget", self.env(port), self.log_dir / f"budget-{port}.log")
        await wait_http_ready(port, self.processes[port], timeout=90)

    def kill(self, port: int) -> None:
        process = self.processes.pop(port)
        process.send_signal(signal.SIGKILL)
        process.wait()

    async def stop_all(self) -> list[int]:
        codes = []
        for port, process in list(self.processes.items()):
            process.send_signal(signal.SIGTERM)
            codes.append(await asyncio.to_thread(process.wait, 30))
            del self.processes[port]
        return codes


@pytest.fixture(scope="module")
async def own_broker() -> AsyncIterator[KafkaAccess]:
    """These tests write review results themselves; on a broker of their own, the suite's shared log
    (which the audit test verifies) never holds two budget deployments' answers to the same reviews."""
    async with private_broker("budget-instances", 0) as kafka:
        yield kafka


@pytest.fixture(scope="module")
async def instances(own_broker: KafkaAccess, pg_admin_dsn: str, log_dir: Path) -> AsyncIterator[BudgetInstances]:
    dsn = await fresh_database(pg_admin_dsn, f"egov_test{TEST_SLOT}_budget_instances")
    running = BudgetInstances(own_broker, dsn, log_dir)
    await asyncio.gather(*(running.start(port) for port in PORTS))
    async with running.stand_in:  # no intake here: the tests append receipts, the stand-in says so
        yield running
    assert await running.stop_all() == [0] * len(running.processes or PORTS)


async def open_year(year: int, pot: int) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            f"http://127.0.0.1:{PORTS[0]}/v1/fiscal-years",
            json={"fiscal_year": year, "pot_cents": pot},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
    assert response.status_code == 201, response.text


async def publish_all(kafka: KafkaAccess, envelopes: list[Envelope], topic: Topic = REVIEWS) -> None:
    producer = make_producer(kafka, "test-writer")
    await producer.start()
    try:
        for chunk in range(0, len(envelopes), 200):
            await asyncio.gather(*(publish(producer, topic, e.subject, e) for e in envelopes[chunk : chunk + 200]))
    finally:
        await producer.stop()


def places_from_now(numbers: list[int]) -> dict[int, datetime]:
    """Receipt times as intake stamps them while a burst comes in: now, a millisecond apart, in number order."""
    start = datetime.now(UTC)
    return {n: start + timedelta(milliseconds=i) for i, n in enumerate(numbers)}


async def settled(pool: asyncpg.Pool, ids: list[str], timeout: float) -> None:
    """Until every application has its budget outcome and the outbox is empty."""
    for _ in range(int(timeout * 4)):
        done = await pool.fetchval(
            "SELECT count(*) FROM line WHERE application_id = ANY($1)"
            " AND (status = 'approved' OR told_position IS NOT NULL)",
            ids,
        )
        if done == len(ids) and await pool.fetchval("SELECT count(*) FROM outbox") == 0:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"only {done} of {len(ids)} applications have a budget outcome")


def shuffled_with_duplicates(envelopes: list[Envelope], copies: int) -> list[Envelope]:
    deliveries = envelopes + random.sample(envelopes, copies)
    random.shuffle(deliveries)
    return deliveries


async def test_two_instances_serve_the_line_in_order(instances: BudgetInstances, own_broker: KafkaAccess) -> None:
    """Receipts of a burst arrive on six partitions in shuffled order, some twice, and reviews finish in
    yet another order: the money goes to the first k places all the same."""
    k, numbers = 77, list(range(1, 201))
    await open_year(2031, k * 100)
    places = places_from_now(numbers)
    receipts = [received(n, 100, years={2031: 100}, place=places[n]) for n in numbers]
    async with instances.stand_in.appending(min(places.values())):
        await publish_all(own_broker, shuffled_with_duplicates(receipts, 60), APPLICATIONS)
    reviews = [reviewed(n, 100, years={2031: 100}, place=places[n]) for n in numbers]
    await publish_all(own_broker, shuffled_with_duplicates(reviews, 60))
    pool = await create_pool(instances.dsn)
    try:
        await settled(pool, [app_id(n) for n in numbers], timeout=60)
        approved = await pool.fetch(
            "SELECT application_id FROM line WHERE status = 'approved' AND application_id = ANY($1) ORDER BY 1",
            [app_id(n) for n in numbers],
        )
        assert [r[0] for r in approved] == [app_id(n) for n in range(1, k + 1)]
        positions = await pool.fetch(
            "SELECT application_id, told_position FROM line WHERE status = 'waiting'"
            " AND application_id = ANY($1) ORDER BY 1",
            [app_id(n) for n in numbers],
        )
        assert [(r[0], r[1]) for r in positions] == [(app_id(n), n - k) for n in range(k + 1, 201)]
        await assert_invariants(pool)
    finally:
        await pool.close()


async def test_slow_reviews_and_a_caseworker_a_day_later_keep_the_places_they_were_received_in(
    instances: BudgetInstances, own_broker: KafkaAccess
) -> None:
    """The early applications' reviews are slowed on purpose (they finish last, seconds later), on
    other partitions than the late ones'; the very first one waits for a caseworker, who decides a day
    later (its review's ready_at). The money still goes to exactly the first places."""
    k, numbers = 12, list(range(501, 541))
    await open_year(2033, k * 100)
    places = places_from_now(numbers)
    receipts = [received(n, 100, years={2033: 100}, place=places[n]) for n in numbers]
    async with instances.stand_in.appending(min(places.values())):
        await publish_all(own_broker, shuffled_with_duplicates(receipts, 5), APPLICATIONS)
    early, late = numbers[:20], numbers[20:]
    assert len({partition_of(app_id(n)) for n in early} | {partition_of(app_id(n)) for n in late}) >= 2
    first = numbers[0]
    a_day = timedelta(days=1)

    def review_of(n: int, outcome: ReviewOutcome = ReviewOutcome.ELIGIBLE, ready: timedelta = timedelta()) -> Envelope:
        envelope = reviewed(n, 100, years={2033: 100}, place=places[n], outcome=outcome)
        envelope.data["ready_at"] = (places[n] + timedelta(seconds=30) + ready).isoformat()
        return envelope

    await publish_all(own_broker, [review_of(n) for n in reversed(late)])
    await publish_all(own_broker, [review_of(first, ReviewOutcome.NEEDS_MANUAL_REVIEW)])
    await asyncio.sleep(3)  # the late ones are long reviewed; the early ones' reviews still run
    await publish_all(own_broker, [review_of(n) for n in reversed(early[1:])])
    await publish_all(own_broker, [review_of(first, ready=a_day)])  # the caseworker, a day later
    pool = await create_pool(instances.dsn)
    try:
        await settled(pool, [app_id(n) for n in numbers], timeout=60)
        approved = await pool.fetch(
            "SELECT application_id FROM line WHERE status = 'approved' AND application_id = ANY($1) ORDER BY 1",
            [app_id(n) for n in numbers],
        )
        assert [r[0] for r in approved] == [app_id(n) for n in numbers[:k]]
        await assert_invariants(pool)
    finally:
        await pool.close()


def partition_of(key: str) -> int:
    """The partition the default partitioner picks for a key on a topic of the registry's size."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % APPLICATIONS.partitions


async def test_sigkill_at_random_moments_loses_and_doubles_nothing(
    instances: BudgetInstances, own_broker: KafkaAccess
) -> None:
    count, amount = 2000, 100
    numbers = list(range(10_001, 10_001 + count))
    ids = [app_id(n) for n in numbers]
    await open_year(2032, count // 2 * amount)
    envelopes = [reviewed(n, amount, years={2032: amount}) for n in numbers]
    deliveries = envelopes + random.sample(envelopes, 200)
    publishing = asyncio.create_task(publish_all(own_broker, deliveries))
    for _ in range(4):
        await asyncio.sleep(random.uniform(0.3, 1.5))
        port = random.choice(PORTS)
        instances.kill(port)
        await instances.start(port)
    await publishing
    pool = await create_pool(instances.dsn)
    try:
        await settled(pool, ids, timeout=120)
        await assert_invariants(pool)
        outcomes = Counter(
            r[0] for r in await pool.fetch("SELECT status FROM line WHERE application_id = ANY($1)", ids)
        )
        assert outcomes == {"approved": count // 2, "waiting": count // 2}
        assert await pool.fetchval("SELECT count(*) FROM decisions WHERE application_id = ANY($1)", ids) == count // 2
    finally:
        await pool.close()
    wanted = set(ids)
    decisions = await read_topic(
        own_broker, DECISIONS, lambda seen: len({e.subject for e in seen} & wanted) >= count // 2, timeout=60
    )
    decided_ids = Counter(
        e.subject for e in {e.id: e for e in decisions if e.subject in wanted}.values() if e.is_a(ApplicationDecided)
    )
    assert len(decided_ids) == count // 2
    assert set(decided_ids.values()) == {1}, "one decision identity each"
    budget_events = await read_topic(own_broker, BUDGET, lambda seen: False, timeout=5)
    told = Counter(
        e.subject
        for e in {e.id: e for e in budget_events if e.subject in wanted}.values()
        if e.is_a(ApplicationWaitlisted)
    )
    assert len(told) == count // 2
    assert set(told.values()) == {1}, "each waiting applicant told once"
