"""The statistics app as a process against a real broker, as its own principal: its totals equal an
independent account of the log, survive a SIGKILL in mid-stream, and do not move on a redelivered decision.

The histories are hand-made (no review or budget behind them), so they go to a broker of this module's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.kafka import KafkaAccess, make_producer
from schemas.envelope import Envelope
from schemas.topics import BUDGET, DECISIONS
from tests.statistics_scenario import History, expected_totals, histories, rows_of
from tests.support import REPO, TEST_SLOT, as_principal, private_broker, wait_http_ready

pytestmark = pytest.mark.integration

PORT = 18005 + 100 * TEST_SLOT
# A registry type statistics does not fold (it was outside the registry when this test was written).
UNFOLDED_TYPE = "de.thueringen.egov.budget.earmarked.v1"


@pytest.fixture(scope="module")
async def own_broker() -> AsyncIterator[KafkaAccess]:
    async with private_broker("statistics", 3) as kafka:
        yield kafka


class StatisticsProcess:
    """``python -m services.statistics`` as its own principal, its output appended to a log file."""

    def __init__(self, kafka: KafkaAccess, group_prefix: str, log_path: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("STATISTICS_")}
        self.env |= as_principal(kafka, "statistics").env("STATISTICS_")
        self.env |= {
            "STATISTICS_HTTP_PORT": str(PORT),
            "STATISTICS_ENVIRONMENT": "test",
            "STATISTICS_CONSUMER_GROUP_PREFIX": group_prefix,
            "STATISTICS_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "STATISTICS_COMMIT_INTERVAL_SECONDS": "1.0",
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.statistics"], cwd=REPO, env=self.env, stdout=log, stderr=log
        )
        await wait_http_ready(PORT, self.process, timeout=90)

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=30)
        self.process = None
        return code


@contextlib.contextmanager
def stopped_at_end(app: StatisticsProcess) -> Iterator[StatisticsProcess]:
    try:
        yield app
    finally:
        if app.process is not None:
            app.kill(signal.SIGTERM)


async def publish_all(kafka: KafkaAccess, records: list[tuple[Any, Envelope]]) -> None:
    producer = make_producer(kafka, "test-statistics-feed")
    await producer.start()
    try:
        for start in range(0, len(records), 500):
            batch = records[start : start + 500]
            sends = [await producer.send(t.name, e.to_bytes(), key=e.subject.encode()) for t, e in batch]
            await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def totals() -> dict[Any, tuple[int, int]]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"http://127.0.0.1:{PORT}/v1/open-data/totals.json")
    assert response.status_code == 200, response.text
    return rows_of(response.json())


async def metric(name: str, **labels: str) -> float:
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"http://127.0.0.1:{PORT}/metrics")).text
    found = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            found += float(line.rsplit(" ", 1)[1])
    return found


async def wait_for_totals(expected: dict[Any, tuple[int, int]], timeout: float = 90.0) -> dict[Any, tuple[int, int]]:
    deadline = time.monotonic() + timeout
    seen: dict[Any, tuple[int, int]] = {}
    while time.monotonic() < deadline:
        seen = await totals()
        if seen == expected:
            return seen
        await asyncio.sleep(0.5)
    missing = {k: (seen.get(k), v) for k, v in expected.items() if seen.get(k) != v}
    extra = {k: v for k, v in seen.items() if k not in expected}
    raise AssertionError(f"totals differ: {len(missing)} wrong, {len(extra)} extra; e.g. {list(missing.items())[:3]}")


def records_of(all_histories: list[History]) -> list[tuple[Any, Envelope]]:
    """Applications, budget and decisions topics interleaved as they come, one history after another."""
    return [record for h in all_histories for record in h.records]


def noise(h: History) -> list[tuple[Any, Envelope]]:
    """A type statistics does not fold and a known one with a field added later: both taken in stride."""
    unknown = Envelope.model_validate(
        {
            **h.records[0][1].model_dump(mode="json"),
            "id": str(uuid.uuid4()),
            "type": UNFOLDED_TYPE,
            "data": {"application_id": h.application_id, "amount_cents": 1},
        }
    )
    last_topic, last = h.records[-1]
    extended = Envelope.model_validate(
        {**last.model_dump(mode="json"), "id": str(uuid.uuid4()), "data": {**last.data, "place_time": "2026-03-02"}}
    )
    return [(BUDGET, unknown)] if last_topic is not DECISIONS else [(BUDGET, unknown), (DECISIONS, extended)]


async def test_totals_equal_the_log_across_a_sigkill_and_a_redelivered_decision(
    own_broker: KafkaAccess, tmp_path: Path
) -> None:
    group_prefix = f"t{uuid.uuid4().hex[:8]}-"
    app = StatisticsProcess(as_principal(own_broker, "statistics"), group_prefix, tmp_path / "statistics.log")
    first = histories(1500)
    with stopped_at_end(app):
        await app.start()
        await publish_all(own_broker, records_of(first))
        # Kill it while it is still counting: some records are handled but their offsets not yet committed.
        deadline = time.monotonic() + 60
        while await metric("egov_events_consumed_total", outcome="counted") < 1000:
            assert time.monotonic() < deadline, "statistics counted nothing within a minute"
            await asyncio.sleep(0.05)
        assert app.kill() == -signal.SIGKILL
        await app.start()
        expected = expected_totals(first)
        assert await wait_for_totals(expected) == expected
        # The restart did read again what the killed process had handled but not committed.
        again = await metric("egov_events_consumed_total", outcome="duplicate")
        assert again + await metric("egov_events_consumed_total", outcome="replayed") > 0
        # Stays equal: nothing counted twice once the redelivered records are through.
        await asyncio.sleep(3)
        assert await totals() == expected

        decided = next(e for h in first for t, e in h.records if t is DECISIONS)
        before = await metric("egov_events_consumed_total", outcome="duplicate")
        await publish_all(own_broker, [(DECISIONS, decided), *noise(first[0]), *noise(first[1])])
        deadline = time.monotonic() + 30
        while await metric("egov_events_consumed_total", outcome="duplicate") <= before:
            assert time.monotonic() < deadline, "the redelivered decision was not consumed"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)
        assert await totals() == expected
        assert await metric("egov_events_consumed_total", outcome="ignored", type=UNFOLDED_TYPE) >= 2
