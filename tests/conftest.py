"""Shared fixtures. Integration and e2e fixtures need the real Kafka broker and PostgreSQL
that ``make test`` starts; they fail loudly when those are missing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from runtime.credentials import new_token, token_digest
from runtime.kafka import KafkaAccess, ensure_topics
from schemas.topics import ALL_TOPICS
from tests.support import (
    SERVICE_PORTS,
    SMTP_TEST_PORT,
    TEST_SLOT,
    ServiceDatabase,
    ServiceProcesses,
    SmtpSink,
    kafka_access,
    private_broker,
    required_env,
    running_services,
    service_database,
)

# The kind of test each folder holds; tests/security mixes kinds and says each file's own.
FOLDER_KINDS = {"unit": "unit", "integration": "integration", "e2e": "e2e", "perf": "perf", "ops": "ops"}
KINDS = frozenset(FOLDER_KINDS.values())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers follow folders, so ``-m unit`` selects exactly tests/unit (and the unit tests of
    tests/security); a test whose marker says another kind than its folder is a usage error."""
    wrong = []
    for item in items:
        folder = item.path.parent.name
        kinds = {mark.name for mark in item.iter_markers() if mark.name in KINDS}
        expected = FOLDER_KINDS.get(folder)
        if expected is None:
            if len(kinds) != 1:
                wrong.append(f"{item.nodeid}: needs exactly one of {sorted(KINDS)}, has {sorted(kinds)}")
        elif kinds - {expected}:
            wrong.append(f"{item.nodeid}: in tests/{folder} but marked {sorted(kinds)}")
        else:
            item.add_marker(expected)
    if wrong:
        raise pytest.UsageError("markers disagree with folders:\n" + "\n".join(wrong))
    items.sort(key=lambda item: item.get_closest_marker("after_all") is not None)  # stable: order kept otherwise


@pytest.fixture(scope="session")
async def kafka() -> KafkaAccess:
    """The suite's broker, reached as the operator (a super user); services get their own principals."""
    kafka = kafka_access(required_env("EGOV_TEST_KAFKA"))
    await ensure_topics(kafka, ALL_TOPICS)
    return kafka


@pytest.fixture(scope="session")
async def scratch_kafka() -> AsyncIterator[KafkaAccess]:
    """A broker of the session's own, for tests that feed hand-made events to in-process handlers and
    publish what they make of them: the shared log, which the audit verifies last, keeps only real
    causal chains. Started once, on first use."""
    async with private_broker("scratch", 2) as kafka:
        yield kafka


@pytest.fixture(scope="session")
def pg_admin_dsn() -> str:
    return required_env("EGOV_TEST_PG_DSN")


@pytest.fixture(scope="session")
async def service_databases(pg_admin_dsn: str) -> dict[str, ServiceDatabase]:
    """Per service a fresh database with its own owner role and runtime login, named by slot."""
    return {name: await service_database(pg_admin_dsn, f"egov_test{TEST_SLOT}_{name}") for name in SERVICE_PORTS}


@pytest.fixture(scope="session")
def service_dsns(service_databases: dict[str, ServiceDatabase]) -> dict[str, str]:
    """Each service's runtime login: what the service itself may do, and no more."""
    return {name: database.runtime for name, database in service_databases.items()}


@pytest.fixture(scope="session")
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink(SMTP_TEST_PORT)
    await sink.start()
    yield sink
    await sink.stop()


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = Path(__file__).resolve().parents[1] / ".state" / f"test{TEST_SLOT}" / "service-logs"
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.log"):
        old.unlink()
    return path


@pytest.fixture(scope="session")
async def services(
    kafka: KafkaAccess, service_databases: dict[str, ServiceDatabase], smtp_sink: SmtpSink, log_dir: Path
) -> AsyncIterator[ServiceProcesses]:
    runtime = {name: database.runtime for name, database in service_databases.items()}
    owners = {name: database.owner for name, database in service_databases.items()}
    async with running_services(kafka, runtime, smtp_sink.port, log_dir, owner_dsns=owners) as running:
        yield running


async def issue_portal_token(intake_dsn: str, portal_id: str) -> str:
    token = new_token("egp_")
    conn = await asyncpg.connect(intake_dsn)
    try:
        await conn.execute(
            "INSERT INTO portals (portal_id, token_sha256) VALUES ($1, $2)"
            " ON CONFLICT (portal_id) DO UPDATE SET token_sha256 = EXCLUDED.token_sha256",
            portal_id,
            token_digest(token),
        )
    finally:
        await conn.close()
    return token


@pytest.fixture(scope="session")
async def portal_token(services: ServiceProcesses, service_dsns: dict[str, str]) -> str:
    return await issue_portal_token(service_dsns["intake"], "portal-a")
