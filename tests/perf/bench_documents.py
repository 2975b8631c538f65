"""A 100 MiB attachment uploaded to intake: throughput, and intake's resident memory (target <= 150 MiB).

EGOV_TEST_SLOT=4 deploy/test.sh bench tests/perf/bench_documents.py

Intake runs as a process against the test broker and a fresh database, as in production. The client
announces a 100 MiB attachment (the announced limit) of pseudo-random bytes, so nothing compresses,
and streams it in 256 KiB pieces; the bytes are generated piece by piece on both passes (digest, then
upload), so the client never holds the document either. Then the same upload again: the store has the
document already, so the repeat only counts and hashes. Printed: seconds and MiB/s of both uploads,
intake's resident memory before and after, and its peak (VmHWM, which includes the start-up).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest

from runtime.kafka import KafkaAccess
from tests.conftest import issue_portal_token
from tests.perf.bench_intake import rss_mib, stop, wait_ready
from tests.support import REPO, SERVICE_PORTS, TEST_SLOT, fresh_database, sample_application, service_kafka_env

pytestmark = pytest.mark.perf

MIB = 1024 * 1024
SIZE = 100 * MIB
PIECE = 256 * 1024
RSS_TARGET_MIB = 150
INTAKE_PORT = SERVICE_PORTS["intake"] + 73


def pieces(seed: int = 15) -> Iterator[bytes]:
    generator = random.Random(seed)
    for _ in range(SIZE // PIECE):
        yield generator.randbytes(PIECE)


async def body() -> AsyncIterator[bytes]:
    for piece in pieces():
        yield piece


def digest() -> str:
    hashed = hashlib.sha256()
    for piece in pieces():
        hashed.update(piece)
    return f"sha256:{hashed.hexdigest()}"


@dataclass(frozen=True)
class Intake:
    url: str
    pid: int
    token: str


@pytest.fixture(scope="module")
def intake(kafka: KafkaAccess, pg_admin_dsn: str) -> Iterator[Intake]:
    dsn = asyncio.run(fresh_database(pg_admin_dsn, f"egov_test{TEST_SLOT}_bench_documents"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
    env.update(
        **service_kafka_env(kafka, "intake"),
        INTAKE_DATABASE_URL=dsn,
        INTAKE_HTTP_PORT=str(INTAKE_PORT),
        INTAKE_ENVIRONMENT="test",
        INTAKE_LOG_LEVEL="WARNING",
        # The body deadline bounds slow clients; on this shared machine the store may take longer than 30 s.
        INTAKE_HTTP_BODY_TIMEOUT_SECONDS="300",
    )
    log = open(REPO / ".state" / f"test{TEST_SLOT}-bench-documents.log", "wb")  # noqa: SIM115
    process = subprocess.Popen([sys.executable, "-m", "services.intake"], cwd=REPO, env=env, stdout=log, stderr=log)
    try:
        url = f"http://127.0.0.1:{INTAKE_PORT}"
        wait_ready(f"{url}/ready", process)
        yield Intake(url, process.pid, asyncio.run(issue_portal_token(dsn, "bench-portal")))
    finally:
        stop(process)


async def upload(http: httpx.AsyncClient, token: str, application_id: str) -> float:
    started = time.perf_counter()
    response = await http.put(
        f"/v1/applications/{application_id}/attachments/0",
        content=body(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"},
    )
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return elapsed


def test_a_100_mib_upload_keeps_intake_small(intake: Intake) -> None:
    announced = {
        "file_name": "plan.pdf",
        "media_type": "application/pdf",
        "size_bytes": SIZE,
        "kind": "cost_plan",
        "digest": digest(),
    }

    async def run() -> tuple[float, float]:
        async with httpx.AsyncClient(base_url=intake.url, timeout=600) as http:
            application = {**sample_application(), "attachments": [announced]}
            submitted = await http.post(
                "/v1/applications", json=application, headers={"Authorization": f"Bearer {intake.token}"}
            )
            assert submitted.status_code == 202, submitted.text
            application_id = submitted.json()["application_id"]
            return await upload(http, intake.token, application_id), await upload(http, intake.token, application_id)

    before, _ = rss_mib(intake.pid)
    first, repeat = asyncio.run(run())
    after, peak = rss_mib(intake.pid)
    print(
        f"\n100 MiB upload: {first:.1f} s ({100 / first:.1f} MiB/s) stored; "
        f"{repeat:.1f} s ({100 / repeat:.1f} MiB/s) repeated (already stored)"
        f"\nintake resident memory: {before:.0f} MiB before, {after:.0f} MiB after, {peak:.0f} MiB peak "
        f"(target <= {RSS_TARGET_MIB} MiB)"
    )
    assert peak <= RSS_TARGET_MIB
