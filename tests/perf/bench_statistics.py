"""Decisions per second the statistics app aggregates, beside a plain aiokafka loop doing the same sums.

EGOV_TEST_SLOT=6 deploy/test.sh bench tests/perf/bench_statistics.py

The same application histories (receipt, waitlist, reservations, commitments, releases, withdrawals,
decisions) sit on the applications, budget and decisions topics. Each run reads all of them from the
beginning in a consumer group of its own, timed from the first record counted to the last:

1. ceiling: a plain aiokafka loop in this process that folds every record with the same core
   (``handlers.handle``) into dicts in memory: no tables, no changelog, no commits to wait for;
2. the app: ``python -m services.statistics`` as its own principal (fresh tables each run). It starts at
   the end of the topics; once it is ready the same histories are published again (new event ids), and
   it is timed by its ``egov_events_consumed_total`` counter; its resident memory is read from /proc.

Each is run ``BENCH_REPEATS`` times (default 3); the medians are printed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from runtime.kafka import KafkaAccess, make_producer
from schemas.topics import DECISIONS
from services.statistics.domain import Figure
from services.statistics.handlers import handle
from tests.statistics_scenario import SOURCES, histories
from tests.support import REPO, TEST_SLOT, as_principal, wait_http_ready

pytestmark = pytest.mark.perf

N = int(os.environ.get("BENCH_APPLICATIONS", "3000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
PORT = 18005 + 100 * TEST_SLOT


async def publish_histories(kafka: KafkaAccess) -> tuple[int, int]:
    """(records, decisions) published to the source topics."""
    records = [record for h in histories(N, seed=1818) for record in h.records]
    producer = make_producer(kafka, "bench-statistics-feed")
    await producer.start()
    try:
        sends = [await producer.send(t.name, e.to_bytes(), key=e.subject.encode()) for t, e in records]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return len(records), sum(1 for t, _ in records if t is DECISIONS)


@pytest.fixture(scope="module")
async def log_on_broker(kafka: KafkaAccess) -> tuple[int, int]:
    return await publish_histories(kafka)


async def plain_loop(kafka: KafkaAccess, records: int) -> float:
    """Seconds to fold every record into in-memory figures and totals, the same core, nothing durable."""
    consumer = AIOKafkaConsumer(
        *[t.name for t in SOURCES],
        **as_principal(kafka, "statistics").client_options(),
        group_id=f"statistics-bench-plain-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
    )
    figures: dict[str, Any] = {}
    sums: dict[Any, Figure] = {}
    done, started = 0, 0.0
    await consumer.start()
    try:
        while done < records:
            batch = await consumer.getmany(timeout_ms=200, max_records=500)
            if batch and not started:
                started = time.perf_counter()
            for tp, messages in batch.items():
                for m in messages:
                    key = m.key.decode()
                    step = handle(m.value, f"{tp.topic}:{m.offset}", figures.get(key))
                    if step.figures is not None:
                        figures[key] = step.figures
                    for cell, change in (step.delta or {}).items():
                        old = sums.get((tp.partition, cell), Figure(0, 0))
                        sums[(tp.partition, cell)] = Figure(
                            old.applications + change.applications, old.amount_cents + change.amount_cents
                        )
                    done += 1
            await consumer.commit()
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def counted(http: httpx.AsyncClient) -> float:
    text = (await http.get(f"http://127.0.0.1:{PORT}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("egov_events_consumed_total{")
    )


def rss_mib(pid: int) -> float:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmHWM"].split()[0]) / 1024


async def the_app(kafka: KafkaAccess, records: int, log_path: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of the statistics app folding every record into its tables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATISTICS_")}
    env |= as_principal(kafka, "statistics").env("STATISTICS_") | {
        "STATISTICS_HTTP_PORT": str(PORT),
        "STATISTICS_ENVIRONMENT": "test",
        "STATISTICS_CONSUMER_GROUP_PREFIX": f"bench{uuid.uuid4().hex[:6]}-",
        "STATISTICS_LOG_LEVEL": "WARNING",
        "STATISTICS_KAFKA_OFFSET_RESET": "latest",
    }
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.statistics"], cwd=REPO, env=env, stdout=log, stderr=log
        )
    try:
        await wait_http_ready(PORT, process, timeout=120)
        await asyncio.sleep(3)  # the fresh group's position is settled at the end before anything new arrives
        publishing = asyncio.ensure_future(publish_histories(kafka))
        async with httpx.AsyncClient(timeout=10) as http:
            started = 0.0
            deadline = time.monotonic() + 600
            while (seen := await counted(http)) < records:
                assert time.monotonic() < deadline, f"only {seen} of {records} records counted"
                if seen and not started:
                    started = time.perf_counter()
                await asyncio.sleep(0.05)
        await publishing
        return time.perf_counter() - started, rss_mib(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


async def test_statistics_against_its_ceiling(
    kafka: KafkaAccess, log_on_broker: tuple[int, int], tmp_path: Path
) -> None:
    records, decisions = log_on_broker
    ceiling = [await plain_loop(kafka, records) for _ in range(REPEATS)]
    runs = [await the_app(kafka, records, tmp_path / "statistics.log") for _ in range(REPEATS)]
    plain_s = statistics.median(ceiling)
    app_s = statistics.median(s for s, _ in runs)
    rss = statistics.median(r for _, r in runs)
    print(f"\nstatistics: {N} applications, {records} records, {decisions} decisions; medians of {REPEATS} runs")
    print(f"  plain aiokafka loop (ceiling): {records / plain_s:8.0f} records/s {decisions / plain_s:7.0f} decisions/s")
    print(
        f"  statistics app (faust)       : {records / app_s:8.0f} records/s {decisions / app_s:7.0f} decisions/s"
        f"  ({plain_s / app_s:.0%} of the ceiling), peak RSS {rss:.0f} MiB"
    )
    assert app_s > 0
