"""Accepted submissions per second through intake beside a bare FastAPI endpoint (the ceiling).

EGOV_TEST_SLOT=4 deploy/test.sh bench tests/perf/bench_intake.py

Two servers run as processes on the same machine in the same run, on the same stack (FastAPI +
uvicorn + uvloop, started the way every service starts):

1. ceiling: ``POST /v1/applications`` that reads the body and answers 202 with a receipt-sized JSON;
2. intake: the real service (auth, rate limit, validation, Idempotency-Key, quota claim, acks=all
   publish, status row), against the test broker and a fresh database, with its status projection
   and Kafka ingress consumers running as in production.

A keep-alive HTTP/1.1 client (raw asyncio on uvloop, so the client costs little) drives each at
several concurrency levels, in alternating short rounds so that noise from other work on the
machine falls on both. Printed per level: the median requests/s of the rounds, p50 and p99 latency,
and intake's ratio to the ceiling; then p50/p99 at half of intake's peak rate (open loop, latency
measured from the scheduled send time), and intake's resident memory. Every submission carries its
own Idempotency-Key and applicant, as a portal's would. ``BENCH_PROFILE=1`` runs intake under
cProfile and prints where its time went.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from runtime.kafka import KafkaAccess
from tests.conftest import issue_portal_token
from tests.support import REPO, SERVICE_PORTS, TEST_SLOT, fresh_database, sample_application, service_kafka_env

pytestmark = pytest.mark.perf

LEVELS = (1, 8, 32, 64)
ROUNDS = 3
ROUND_SECONDS = 1.0
HALF_PEAK_SECONDS = 3.0
CEILING_PORT = SERVICE_PORTS["intake"] + 70
INTAKE_PORT = SERVICE_PORTS["intake"] + 71
MIDDLEWARE_CEILING_PORT = SERVICE_PORTS["intake"] + 72
MIDDLEWARE_LEVEL = 32
PROFILE = os.environ.get("BENCH_PROFILE") == "1"
PLACEHOLDER_AGS = b"16999999"


# --- the ceiling: the same stack, no work --------------------------------------------------------


def ceiling_app() -> FastAPI:
    app = FastAPI()
    receipt = {
        "application_id": "TH-EGOV-2027-000001",
        "status": "received",
        "received_at": "2027-01-01T00:00:00+00:00",
        "status_url": "http://127.0.0.1/v1/applications/TH-EGOV-2027-000001",
        "category_open": True,
        "category_notice": None,
    }

    @app.post("/v1/applications", status_code=202)
    async def submit(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse(receipt, status_code=202)

    return app


async def serve_ceiling(port: int, with_runtime_middleware: bool) -> None:
    from runtime.http import HttpServer, add_operational_routes

    app = ceiling_app()
    if with_runtime_middleware:  # what every service's HTTP edge adds: /health, /ready, /metrics, request metrics
        add_operational_routes(app, {})
    server = HttpServer(app, "127.0.0.1", port)
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop()


# --- the load generator ----------------------------------------------------------------------------


@dataclass
class Result:
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu: float = 0.0  # CPU seconds the server process used meanwhile

    @property
    def cpu_ms_per_request(self) -> float:
        answered = sum(self.statuses.values())
        return self.cpu / answered * 1000 if answered else float("nan")

    @property
    def accepted(self) -> int:
        return self.statuses.get(202, 0)

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")

    def add(self, other: Result) -> None:
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count
        self.latencies += other.latencies
        self.cpu += other.cpu


class Connection:
    """One keep-alive HTTP/1.1 connection; just enough parsing for uvicorn's answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, request: bytes) -> int:
        self.writer.write(request)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) != b"\r\n":
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


class Requests:
    """Submissions for a target: each with its own applicant and Idempotency-Key."""

    def __init__(self, port: int, token: str) -> None:
        body = sample_application(ags=PLACEHOLDER_AGS.decode())
        self.body = json.dumps(body).encode()
        self.head = (
            f"POST /v1/applications HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(self.body)}\r\n"
        ).encode()
        self.count = 0

    def next(self) -> bytes:
        self.count += 1
        n = self.count
        ags = f"16{n % 1_000_000:06d}".encode()
        return (
            self.head
            + b"Idempotency-Key: bench-%d-%d\r\n\r\n" % (os.getpid(), n)
            + self.body.replace(PLACEHOLDER_AGS, ags)
        )


@dataclass(frozen=True)
class Target:
    port: int
    pid: int


async def closed_loop(target: Target, requests: Requests, concurrency: int, seconds: float) -> Result:
    """`concurrency` clients, each sending its next request as soon as it has the answer."""
    connections = [await Connection.open(target.port) for _ in range(concurrency)]
    result = Result()
    deadline = time.perf_counter() + seconds

    async def client(connection: Connection) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status = await connection.send(requests.next())
            result.latencies.append(time.perf_counter() - started)
            result.statuses[status] = result.statuses.get(status, 0) + 1

    started, cpu = time.perf_counter(), cpu_seconds(target.pid)
    await asyncio.gather(*(client(c) for c in connections))
    result.seconds = time.perf_counter() - started
    result.cpu = cpu_seconds(target.pid) - cpu
    for c in connections:
        c.close()
    return result


async def open_loop(target: Target, requests: Requests, rate: float, seconds: float, connections: int = 64) -> Result:
    """Requests sent on a fixed schedule; latency counts from the scheduled time (no coordinated omission)."""
    pool = [await Connection.open(target.port) for _ in range(connections)]
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for c in pool:
        idle.put_nowait(c)
    result = Result()
    start = time.perf_counter()

    async def one(scheduled: float) -> None:
        connection = await idle.get()
        status = await connection.send(requests.next())
        result.latencies.append(time.perf_counter() - scheduled)
        result.statuses[status] = result.statuses.get(status, 0) + 1
        idle.put_nowait(connection)

    tasks = []
    for i in range(int(rate * seconds)):
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - start
    for c in pool:
        c.close()
    return result


# --- processes -------------------------------------------------------------------------------------


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{url} exited"
        try:
            if httpx.get(url, timeout=1).status_code in (200, 405):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


@dataclass(frozen=True)
class Servers:
    dsn: str
    token: str
    intake: Target
    ceiling: Target
    middleware_ceiling: Target


@pytest.fixture(scope="module")
def servers(kafka: KafkaAccess, pg_admin_dsn: str) -> Iterator[Servers]:
    dsn = asyncio.run(fresh_database(pg_admin_dsn, f"egov_test{TEST_SLOT}_bench_intake"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
    env.update(
        **service_kafka_env(kafka, "intake"),
        INTAKE_DATABASE_URL=dsn,
        INTAKE_HTTP_PORT=str(INTAKE_PORT),
        INTAKE_ENVIRONMENT="test",
        INTAKE_LOG_LEVEL="WARNING",
        INTAKE_RATE_LIMIT_PER_SECOND="1000000",
        INTAKE_RATE_LIMIT_BURST="1000000",
        INTAKE_MAX_OPEN_APPLICATIONS_PER_YEAR="1000",
    )
    log = open(REPO / ".state" / f"test{TEST_SLOT}-bench-intake.log", "wb")  # noqa: SIM115
    profile = Path(tempfile.mkdtemp()) / "intake.prof"
    command = ["-m", "cProfile", "-o", str(profile)] if PROFILE else []
    intake = subprocess.Popen(
        [sys.executable, *command, "-m", "services.intake"], cwd=REPO, env=env, stdout=log, stderr=log
    )
    ceiling = subprocess.Popen([sys.executable, "-m", "tests.perf.bench_intake", str(CEILING_PORT)], cwd=REPO)
    middleware = [sys.executable, "-m", "tests.perf.bench_intake", str(MIDDLEWARE_CEILING_PORT), "middleware"]
    middleware_ceiling = subprocess.Popen(middleware, cwd=REPO)
    try:
        wait_ready(f"http://127.0.0.1:{INTAKE_PORT}/ready", intake)
        wait_ready(f"http://127.0.0.1:{CEILING_PORT}/v1/applications", ceiling)
        wait_ready(f"http://127.0.0.1:{MIDDLEWARE_CEILING_PORT}/v1/applications", middleware_ceiling)
        token = asyncio.run(issue_portal_token(dsn, "bench-portal"))
        yield Servers(
            dsn,
            token,
            Target(INTAKE_PORT, intake.pid),
            Target(CEILING_PORT, ceiling.pid),
            Target(MIDDLEWARE_CEILING_PORT, middleware_ceiling.pid),
        )
        now, peak = rss_mib(intake.pid)
        print(f"\nintake resident memory: {now:.0f} MiB now, {peak:.0f} MiB peak (target <= 150 MiB)")
    finally:
        stop(middleware_ceiling)
        stop(ceiling)
        stop(intake)
        if PROFILE:
            print_profile(profile)


def print_profile(path: Path) -> None:
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(60)
    print(out.getvalue())


def test_accepted_submissions_per_second_beside_the_bare_endpoint(servers: Servers) -> None:
    import uvloop

    dsn, token, intake, ceiling = servers.dsn, servers.token, servers.intake, servers.ceiling
    began = time.monotonic()
    intake_requests, ceiling_requests = Requests(INTAKE_PORT, token), Requests(CEILING_PORT, token)
    rows: list[tuple[int, Result, Result]] = []
    middleware_row: list[Result] = []
    every = Result()

    async def run() -> Result:
        every.add(await closed_loop(intake, intake_requests, 8, 0.5))  # warm-up: connections, caches
        await closed_loop(ceiling, ceiling_requests, 8, 0.5)
        for level in LEVELS:
            runs: dict[str, list[Result]] = {"ceiling": [], "intake": []}
            for _ in range(ROUNDS):
                runs["ceiling"].append(await closed_loop(ceiling, ceiling_requests, level, ROUND_SECONDS))
                runs["intake"].append(await closed_loop(intake, intake_requests, level, ROUND_SECONDS))
            rows.append((level, summarise(runs["ceiling"]), summarise(runs["intake"])))
        middleware_requests = Requests(MIDDLEWARE_CEILING_PORT, token)
        rounds = [await closed_loop(servers.middleware_ceiling, middleware_requests, MIDDLEWARE_LEVEL, ROUND_SECONDS)]
        rounds += [await closed_loop(servers.middleware_ceiling, middleware_requests, MIDDLEWARE_LEVEL, ROUND_SECONDS)]
        middleware_row.append(summarise(rounds))
        # Steady state: the status view has taken in what the bursts above produced.
        await caught_up(dsn, every.accepted + sum(row[2].accepted for row in rows))
        peak = max(row[2].rate for row in rows)
        return await open_loop(intake, intake_requests, peak / 2, HALF_PEAK_SECONDS)

    half = uvloop.run(run())
    print_table(rows)
    with_middleware = middleware_row[0]
    print(
        f"ceiling with the runtime's HTTP middleware (request metrics), {MIDDLEWARE_LEVEL} clients:"
        f" {with_middleware.rate:.0f}/s, p50 {with_middleware.quantile(0.5):.1f} ms,"
        f" {with_middleware.cpu_ms_per_request:.2f} CPU ms/request"
    )
    peak = max(row[2].rate for row in rows)
    print(
        f"intake at half its peak ({peak / 2:.0f}/s, open loop, {HALF_PEAK_SECONDS:.0f} s): "
        f"p50 {half.quantile(0.5):.1f} ms, p99 {half.quantile(0.99):.1f} ms (target p99 <= 50 ms); "
        f"answers {dict(sorted(half.statuses.items()))}"
    )
    print(f"bench took {time.monotonic() - began:.1f} s")

    for row in rows:
        every.add(row[2])
    every.add(half)
    assert set(every.statuses) == {202}, f"intake answered {every.statuses}"
    assert asyncio.run(count_applications(dsn)) == every.accepted, "every 202, and only those, is an application"


async def caught_up(dsn: str, accepted: int, timeout: float = 15) -> None:
    """Wait (bounded) until the status projection has taken in every received event so far."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        query = "SELECT count(*) FROM application_timeline WHERE event_type = 'application.received.v1'"
        while time.monotonic() < deadline and int(await conn.fetchval(query)) < accepted:
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def count_applications(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM application_status"))
    finally:
        await conn.close()


def summarise(rounds: list[Result]) -> Result:
    total = Result()
    for r in rounds:
        total.add(r)
    median = statistics.median(r.rate for r in rounds)
    total.seconds = total.accepted / median if median else 0.0  # so that .rate is the median round's rate
    return total


def print_table(rows: list[tuple[int, Result, Result]]) -> None:
    print(
        f"\n{'clients':>7} | {'ceiling/s':>9} {'p50 ms':>7} {'p99 ms':>7} |"
        f" {'intake/s':>8} {'p50 ms':>7} {'p99 ms':>7} | ratio | CPU ms/request ceiling, intake"
    )
    for level, ceiling, intake in rows:
        print(
            f"{level:>7} | {ceiling.rate:>9.0f} {ceiling.quantile(0.5):>7.1f} {ceiling.quantile(0.99):>7.1f} |"
            f" {intake.rate:>8.0f} {intake.quantile(0.5):>7.1f} {intake.quantile(0.99):>7.1f} |"
            f" {intake.rate / ceiling.rate:>5.0%} | {ceiling.cpu_ms_per_request:.2f}, {intake.cpu_ms_per_request:.2f}"
        )
    print("(requests/s: median of rounds; latency: all rounds; intake counts 202 answers only;")
    print(" CPU: of the server process alone, not of the broker and database it waits for)")


def profiled_intake(out: str) -> None:
    """Intake under cProfile counting CPU time (not waiting): where its CPU goes per submission."""
    import cProfile
    import runpy

    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        runpy.run_module("services.intake", run_name="__main__")
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    if sys.argv[1] == "profile":
        profiled_intake(sys.argv[2])
    else:
        from runtime.service import run

        port = int(sys.argv[1])
        run(lambda: serve_ceiling(port, with_runtime_middleware=sys.argv[2:] == ["middleware"]))
