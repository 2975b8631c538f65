"""Callbacks per second from notify to a local receiver, beside a bare httpx loop (the ceiling).

EGOV_TEST_SLOT=5 deploy/test.sh bench tests/perf/bench_notify.py

The receiver is an aiohttp server in its own process on 127.0.0.1 that answers 204. Two shapes:
one portal (notify keeps ``NOTIFY_CALLBACK_CONCURRENCY`` callbacks in flight to it) and several
portals at once. Each round:

1. notify: the real service as a process with its own database. N signed receipt callbacks are
   stored as due notices in one statement; timed from that commit until the database says all
   are delivered: claim, sign, POST, record the outcome with its ``notification.delivered``
   event in the outbox, and the relay publishing it to Kafka.
2. ceiling: a bare ``httpx.AsyncClient`` loop in this process, posting the same signed bodies
   with the same number of requests in flight, and nothing else;
3. the same bare loop with ``aiohttp``, the client notify uses for callbacks: a stricter ceiling.

It prints the medians of a few rounds, the ratios, notify's CPU time per notice and its
resident memory (target: at least 50 % of the httpx ceiling, at most 150 MiB).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import httpx
import pytest

from runtime.db import migrate
from runtime.kafka import KafkaAccess
from schemas.events import ApplicationReceived
from schemas.topics import APPLICATIONS, BUDGET, DECISIONS, REVIEWS
from services.notify import store, webhooks
from services.notify.domain import callback_body, notice_id, notice_of
from services.notify.topology import MIGRATIONS
from tests.e2e.test_notify_restart import move_group_to_end
from tests.integration.test_notify_delivery import free_port, received
from tests.support import REPO, TEST_SLOT, fresh_database, service_kafka_env

pytestmark = pytest.mark.perf

N = 1_000
ROUNDS = 3
CONCURRENCY = 4  # notify's default per portal
SHAPES = {"one portal": 1, "8 portals": 8}
HTTP_PORT = 18060 + 100 * TEST_SLOT

RECEIVER = """
import sys
from aiohttp import web

async def hook(request):
    await request.read()
    return web.Response(status=204)

app = web.Application()
app.router.add_post("/hooks/{portal}", hook)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=lambda *_: print("ready", flush=True))
"""


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, "process exited"
            try:
                await http.get(url)
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.2)
    raise TimeoutError(url)


@dataclass
class Bench:
    dsn: str
    receiver_port: int
    notify_pid: int
    secrets: dict[str, str]

    def url(self, portal: str) -> str:
        return f"http://127.0.0.1:{self.receiver_port}/hooks/{portal}"


@pytest.fixture(scope="module")
async def bench(pg_admin_dsn: str, kafka: KafkaAccess, log_dir: Path) -> AsyncIterator[Bench]:
    dsn = await fresh_database(pg_admin_dsn, f"egov_test{TEST_SLOT}_notify_bench")
    receiver_port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(receiver_port)], stdout=subprocess.DEVNULL)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    await migrate(pool, MIGRATIONS)
    secrets = {f"portal-{i}": webhooks.new_secret() for i in range(max(SHAPES.values()))}
    async with pool.acquire() as conn:
        for portal, secret in secrets.items():
            await store.register_endpoint(conn, portal, f"http://127.0.0.1:{receiver_port}/hooks/{portal}", secret)
    await pool.close()
    group = f"bench-{uuid.uuid4().hex[:6]}"
    # notify's consumer sees nothing old: the bench measures delivery only.
    await move_group_to_end(kafka, f"notify-{group}", [APPLICATIONS, REVIEWS, BUDGET, DECISIONS])
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFY_")}
    env.update(
        **service_kafka_env(kafka, "notify"),
        NOTIFY_DATABASE_URL=dsn,
        NOTIFY_HTTP_PORT=str(HTTP_PORT),
        NOTIFY_ENVIRONMENT="test",
        NOTIFY_CONSUMER_NAME=group,
        NOTIFY_LOG_LEVEL="WARNING",
        NOTIFY_ALLOW_LOOPBACK_CALLBACKS="true",  # the receiver is on 127.0.0.1
    )
    log = open(log_dir / "notify-bench.log", "ab")  # noqa: SIM115 - handed to the child process
    notify = subprocess.Popen([sys.executable, "-m", "services.notify"], cwd=REPO, env=env, stdout=log, stderr=log)
    try:
        await wait_http(f"http://127.0.0.1:{HTTP_PORT}/ready", notify)
        await wait_http(f"http://127.0.0.1:{receiver_port}/", receiver)
        yield Bench(dsn, receiver_port, notify.pid, secrets)
    finally:
        notify.terminate()
        receiver.terminate()
        notify.wait(30)
        receiver.wait(30)
        log.close()


def callbacks(portals: list[str], n: int) -> list[tuple[uuid.UUID, str, bytes]]:
    """(notice id, portal, body) of n receipt callbacks spread over the portals: real notices."""
    out = []
    for i in range(n):
        envelope = received(f"TH-EGOV-2027-{i + 1:07d}", portals[i % len(portals)])
        notice = notice_of(envelope.payload(ApplicationReceived))
        assert notice is not None
        nid = notice_id(envelope.id, "callback")
        out.append((nid, portals[i % len(portals)], callback_body(notice, nid, envelope)))
    return out


INSERT = (
    "INSERT INTO notices (notice_id, application_id, notice_type, channel, subject, body_text, body_html,"
    " cause_event_id, event_key, portal_id, destination, callback_body, next_attempt_at, cause_time)"
    " VALUES ($1, $2, 'receipt', 'callback', 'Eingangsbestätigung', '', '', $3, $2, $4, $5, $6, 'infinity', now())"
)


async def through_notify(bench: Bench, load: list[tuple[uuid.UUID, str, bytes]]) -> float:
    conn = await asyncpg.connect(bench.dsn)
    try:
        await conn.execute("TRUNCATE notices")
        rows = [
            (nid, f"TH-EGOV-2027-{i + 1:07d}", str(nid), portal, store.callback_destination(portal), body)
            for i, (nid, portal, body) in enumerate(load)
        ]
        await conn.executemany(INSERT, rows)
        started = time.perf_counter()
        await conn.execute("UPDATE notices SET next_attempt_at = now()")
        while await conn.fetchval("SELECT count(*) FROM notices WHERE status = 'delivered'") < len(load):
            await asyncio.sleep(0.01)
        seconds = time.perf_counter() - started
        assert await conn.fetchval("SELECT count(*) FROM notices WHERE attempts <> 1") == 0
        return seconds
    finally:
        await conn.close()


async def bare_httpx(bench: Bench, load: list[tuple[uuid.UUID, str, bytes]], in_flight: int) -> float:
    work = iter(load)
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(timeout=10, limits=limits, trust_env=False) as http:

        async def worker() -> None:
            for nid, portal, body in work:
                headers = webhooks.headers(bench.secrets[portal], str(nid), int(time.time()), body)
                response = await http.post(bench.url(portal), content=body, headers=headers)
                assert response.status_code == 204

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return time.perf_counter() - started


async def bare_aiohttp(bench: Bench, load: list[tuple[uuid.UUID, str, bytes]], in_flight: int) -> float:
    """The client library notify itself uses for callbacks: the stricter ceiling."""
    work = iter(load)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight)) as http:

        async def worker() -> None:
            for nid, portal, body in work:
                headers = webhooks.headers(bench.secrets[portal], str(nid), int(time.time()), body)
                async with http.post(bench.url(portal), data=body, headers=headers) as response:
                    await response.read()
                    assert response.status == 204

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@dataclass
class Shape:
    notify_s: list[float]
    httpx_s: list[float]
    aiohttp_s: list[float]
    notify_cpu_ms: float

    def rate(self, runs: list[float]) -> float:
        return N / statistics.median(runs)

    def ratio(self, ceiling: list[float]) -> float:
        """Median of the per-round ratios: each round ran both under the same machine load."""
        return statistics.median(c / n for c, n in zip(ceiling, self.notify_s, strict=True))


async def measure(bench: Bench, portal_count: int) -> Shape:
    load = callbacks(sorted(bench.secrets)[:portal_count], N)
    shape = Shape([], [], [], 0.0)
    cpu = []
    for _ in range(ROUNDS):
        before = cpu_seconds(bench.notify_pid)
        shape.notify_s.append(await through_notify(bench, load))
        cpu.append(cpu_seconds(bench.notify_pid) - before)
        shape.httpx_s.append(await bare_httpx(bench, load, CONCURRENCY * portal_count))
        shape.aiohttp_s.append(await bare_aiohttp(bench, load, CONCURRENCY * portal_count))
    shape.notify_cpu_ms = 1000 * statistics.median(cpu) / N
    return shape


async def test_notify_delivers_callbacks_near_the_bare_client_ceiling(bench: Bench) -> None:
    """Rounds alternate notify and the ceilings, so a busy machine slows all alike."""
    began = time.monotonic()
    print(f"\nnotify callbacks: {N} per round, median of {ROUNDS} rounds, {CONCURRENCY} in flight per portal")
    ratios = []
    for name, portal_count in SHAPES.items():
        shape = await measure(bench, portal_count)
        ratios.append(shape.ratio(shape.httpx_s))
        print(
            f"  {name:10s}  notify {shape.rate(shape.notify_s):5.0f}/s ({shape.notify_cpu_ms:.2f} ms CPU per notice)"
            f" | bare httpx loop {shape.rate(shape.httpx_s):5.0f}/s, ratio {shape.ratio(shape.httpx_s):4.0%}"
            f" | bare aiohttp loop {shape.rate(shape.aiohttp_s):5.0f}/s, ratio {shape.ratio(shape.aiohttp_s):4.0%}"
        )
    rss, peak = rss_mib(bench.notify_pid)
    print(f"  notify resident memory {rss:.0f} MiB (peak {peak:.0f} MiB)")
    print("  target: >= 50 % of the bare httpx loop (the ceiling), <= 150 MiB")
    assert time.monotonic() - began < 60, "the benchmark must stay under a minute"
    assert peak <= 150, "notify must stay within 150 MiB"
    assert min(ratios) >= 0.5, "notify should reach at least half the bare client's rate"
