"""Reads while a service's database is unreachable: 503 problem+json with Retry-After, never 500.

Intake always answered so; review and budget answered 500. All three run here as processes of this
test, against a broker of its own and their own databases, with a TCP proxy between them and
PostgreSQL. Cutting the proxy is the outage; the shared PostgreSQL cluster and every other suite's
connections are untouched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from services.review import store as review_store
from tests.conftest import issue_portal_token
from tests.support import (
    ADMIN_TOKEN,
    SERVICE_PORTS,
    SMTP_TEST_PORT,
    TEST_SLOT,
    ServiceProcesses,
    TcpProxy,
    private_broker,
    service_database,
)

pytestmark = pytest.mark.e2e

SERVICES = ("intake", "review", "budget")
# Beside the suite's own services, which may be running in the same session.
PORTS = {name: SERVICE_PORTS[name] + 70 for name in SERVICES}
CASEWORKER_TOKEN = "egc_outage-test-token"
TOKENS: dict[str, str] = {}


@pytest.fixture
async def cut_off(pg_admin_dsn: str, log_dir: Path) -> AsyncIterator[tuple[ServiceProcesses, TcpProxy]]:
    address = urlsplit(pg_admin_dsn)
    proxy = TcpProxy(address.hostname or "127.0.0.1", address.port or 5432)
    await proxy.start()
    databases = {name: await service_database(pg_admin_dsn, f"egov_test{TEST_SLOT}_{name}_outage") for name in SERVICES}
    async with private_broker("db-outage", 3) as kafka:
        processes = ServiceProcesses(
            kafka,
            {name: proxy.via(db.runtime) for name, db in databases.items()},
            SMTP_TEST_PORT,
            log_dir,
            owner_dsns={name: db.owner for name, db in databases.items()},
            http_ports={**SERVICE_PORTS, **PORTS},
        )
        try:
            await processes.start_ready(*SERVICES)
            pool = await asyncpg.create_pool(databases["review"].runtime, min_size=1, max_size=1)
            try:
                await review_store.save_caseworker_token(pool, "sb-outage", CASEWORKER_TOKEN)
            finally:
                await pool.close()
            TOKENS["intake"] = await issue_portal_token(databases["intake"].runtime, "portal-outage")
            yield processes, proxy
        finally:
            await processes.stop_all()
            await proxy.cut()


READS = {
    "intake": ("/v1/applications", ""),
    "review": ("/v1/cases", CASEWORKER_TOKEN),
    "budget": ("/v1/fiscal-years", ADMIN_TOKEN),
}


async def read(http: httpx.AsyncClient, name: str) -> httpx.Response:
    path, token = READS[name]
    token = token or TOKENS[name]
    return await http.get(f"http://127.0.0.1:{PORTS[name]}{path}", headers={"Authorization": f"Bearer {token}"})


async def test_every_service_answers_reads_with_503_and_retry_after_while_its_database_is_away(
    cut_off: tuple[ServiceProcesses, TcpProxy],
) -> None:
    _, proxy = cut_off
    async with httpx.AsyncClient(timeout=30) as http:
        for name in SERVICES:
            assert (await read(http, name)).status_code == 200, name
        await proxy.cut()
        try:
            for name in SERVICES:
                for _ in range(2):  # the pooled connections die first, then new ones are refused
                    answer = await read(http, name)
                    assert answer.status_code == 503, f"{name}: {answer.status_code} {answer.text}"
                    assert answer.headers["content-type"].startswith("application/problem+json"), name
                    assert int(answer.headers["retry-after"]) > 0, name
                    assert answer.json()["code"] == "database.unavailable", name
        finally:
            await proxy.restore()
        deadline = time.monotonic() + 30
        for name in SERVICES:
            while (answer := await read(http, name)).status_code != 200:
                assert answer.status_code == 503, f"{name}: {answer.status_code} {answer.text}"
                assert time.monotonic() < deadline, f"{name} did not read again after the database came back"
                await asyncio.sleep(0.5)
