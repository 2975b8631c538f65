"""Benchmark: reservations per second through the budget service (one and two instances), beside
pgbench running the same reservation SQL on the same database server in the same run (the ceiling).

    make bench   (or: deploy/test.sh bench tests/perf/bench_budget.py)

Each service run feeds eligible review results through the real broker and times the span from
the first publish to the last decision recorded; it prints the median of the runs and the ratio.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from runtime.db import migrate
from runtime.kafka import KafkaAccess
from tests.e2e.test_budget_instances import BudgetInstances, publish_all
from tests.integration.budget_support import MIGRATIONS, reviewed
from tests.support import ADMIN_TOKEN, SERVICE_PORTS, TEST_SLOT, fresh_database

pytestmark = pytest.mark.perf

EVENTS = 3000
RUNS = 3
YEAR = 2040
PGBENCH_SECONDS = 8

RESERVATION_SQL = Path(__file__).with_name("reservation.sql")  # fiscal year 2040, as YEAR


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


async def pgbench_ceiling(admin_dsn: str) -> float:
    dsn = await fresh_database(admin_dsn, f"egov_test{TEST_SLOT}_bench_pgbench")
    pool = await asyncpg.create_pool(dsn)
    await migrate(pool, MIGRATIONS)
    await pool.execute(
        "INSERT INTO pots (fiscal_year, pot_cents, available_cents, opened_by) VALUES ($1, $2, $2, 'b')", YEAR, 10**13
    )
    await pool.close()
    pgbench = shutil.which("pgbench") or next(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))
    user_pass, host_db = dsn.removeprefix("postgresql://").split("@")
    user, password = user_pass.split(":")
    host_port, database = host_db.split("/")
    host, port = host_port.split(":")
    result = subprocess.run(
        [
            str(pgbench),
            "-n",
            "-M",
            "prepared",
            "-c",
            "2",
            "-j",
            "2",
            "-T",
            str(PGBENCH_SECONDS),
            "-h",
            host,
            "-p",
            port,
            "-U",
            user,
            "-f",
            str(RESERVATION_SQL),
            database,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PGPASSWORD": password},
        check=True,
    )
    return float(re.search(r"tps = ([\d.]+)", result.stdout).group(1))  # type: ignore[union-attr]


async def service_rate(
    kafka: KafkaAccess, admin_dsn: str, instances: int, run: int, log_dir: Path
) -> tuple[float, float]:
    dsn = await fresh_database(admin_dsn, f"egov_test{TEST_SLOT}_bench_budget")
    budget = BudgetInstances(kafka, dsn, log_dir)
    ports = [SERVICE_PORTS["budget"] + 60 + i for i in range(instances)]
    base_env = budget.env

    def env(port: int) -> dict[str, str]:
        return {
            **base_env(port),
            "BUDGET_CONSUMER_GROUP_PREFIX": f"bench-{instances}-{run}-",
            "BUDGET_KAFKA_OFFSET_RESET": "latest",
            "BUDGET_ARRIVAL_LATENESS_SECONDS": "0.2",
            "LOG_LEVEL": "WARNING",
        }

    budget.env = env  # type: ignore[method-assign]
    await asyncio.gather(*(budget.start(p) for p in ports))
    async with httpx.AsyncClient(timeout=10) as http:
        opened = await http.post(
            f"http://127.0.0.1:{ports[0]}/v1/fiscal-years",
            json={"fiscal_year": YEAR, "pot_cents": 10**12},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert opened.status_code == 201
    first = 1_000_000 + run * 100_000 + instances * 10_000
    envelopes = [reviewed(n, 100, years={YEAR: 100}) for n in range(first, first + EVENTS)]
    pool = await asyncpg.create_pool(dsn)
    started = time.perf_counter()
    await publish_all(kafka, envelopes)
    while await pool.fetchval("SELECT count(*) FROM decisions") < EVENTS:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    memory = max(rss_mib(p.pid) for p in budget.processes.values())
    await pool.close()
    await budget.stop_all()
    return EVENTS / elapsed, memory


async def test_budget_reservations_per_second(kafka: KafkaAccess, pg_admin_dsn: str, log_dir: Path) -> None:
    ceiling = await pgbench_ceiling(pg_admin_dsn)
    print(f"\npgbench, same reservation SQL, 2 clients: {ceiling:,.0f} reservations/s (ceiling)")
    for instances in (1, 2):
        figures = [await service_rate(kafka, pg_admin_dsn, instances, run, log_dir) for run in range(RUNS)]
        rate = statistics.median(f[0] for f in figures)
        memory = max(f[1] for f in figures)
        print(
            f"budget service, {instances} instance(s): median {rate:,.0f} reservations/s over {RUNS} runs of "
            f"{EVENTS} (ratio to ceiling {rate / ceiling:.0%}), max RSS {memory:.0f} MiB"
        )
        assert rate > 0
