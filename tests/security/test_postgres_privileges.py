"""Least privilege in PostgreSQL (DESIGN.md section 10): each service's login reaches only its own
database, cannot make roles or databases or change the schema, and budget's login cannot rewrite
or empty the ledger: PostgreSQL refuses for want of a grant (42501), before the trigger is asked.

Runs against the real cluster with the slot's per-service roles (tests/support.py service_database)
and, for the grants the services apply at start-up, the real service processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from itertools import permutations

import asyncpg
import pytest

from tests.support import SERVICE_PORTS, TEST_SLOT, ServiceDatabase, ServiceProcesses, dsn_for

pytestmark = pytest.mark.integration

# Named by slot: should a refusal ever fail, what it made collides with no other suite's.
PROBE = f"egov_test{TEST_SLOT}_privilege_probe"


def database_of(dsn: str) -> str:
    return dsn.rsplit("/", 1)[1]


async def connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, ssl=False)


@pytest.fixture
async def budget_login(services: ServiceProcesses, service_dsns: dict[str, str]) -> AsyncIterator[asyncpg.Connection]:
    """Budget's runtime login, after budget has migrated and granted as at every start; it may
    read and append to the ledger (in a transaction rolled back, so the pipeline's ledger keeps
    only real movements)."""
    conn = await connect(service_dsns["budget"])
    try:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute(
            "INSERT INTO ledger (fiscal_year, movement, amount_cents, actor) VALUES (1999, 'opened', 1, 'grant-test')"
        )
        assert await conn.fetchval("SELECT count(*) FROM ledger WHERE actor = 'grant-test'") == 1
        await transaction.rollback()
        yield conn
    finally:
        await conn.close()


@pytest.mark.parametrize(("service", "other"), list(permutations(SERVICE_PORTS, 2)))
async def test_a_service_login_cannot_connect_to_another_services_database(
    service_databases: dict[str, ServiceDatabase], service: str, other: str
) -> None:
    own, foreign = service_databases[service], service_databases[other]
    for dsn in (own.runtime, own.owner):
        conn = await connect(dsn)  # its own database: yes
        await conn.close()
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for database"):
            await connect(dsn_for(dsn, database_of(foreign.runtime)))


async def test_public_may_not_connect_to_the_service_databases(
    pg_admin_dsn: str, service_databases: dict[str, ServiceDatabase]
) -> None:
    conn = await connect(pg_admin_dsn)
    try:
        for database in service_databases.values():
            name = database_of(database.runtime)
            assert await conn.fetchval("SELECT has_database_privilege('public', $1, 'CONNECT')", name) is False
            assert await conn.fetchval("SELECT has_database_privilege('public', $1, 'TEMP')", name) is False
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger SET amount_cents = amount_cents + 1",
        "DELETE FROM ledger",
        "TRUNCATE ledger",
        "ALTER TABLE ledger DISABLE TRIGGER ledger_append_only",
        "DROP TRIGGER ledger_append_only ON ledger",
    ],
)
async def test_budget_login_cannot_rewrite_the_ledger(budget_login: asyncpg.Connection, statement: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
        await budget_login.execute(statement)
    assert refused.value.sqlstate == "42501"


@pytest.mark.parametrize("service", list(SERVICE_PORTS))
async def test_a_service_login_cannot_make_roles_or_databases(
    service_databases: dict[str, ServiceDatabase], service: str
) -> None:
    for dsn in (service_databases[service].runtime, service_databases[service].owner):
        conn = await connect(dsn)
        try:
            for statement in (f"CREATE ROLE {PROBE}", f"CREATE DATABASE {PROBE}"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement)
        finally:
            await conn.close()


@pytest.mark.parametrize(
    "statement",
    [
        f"CREATE TABLE {PROBE} (id int)",
        f"CREATE SCHEMA {PROBE}",
        f"CREATE TEMP TABLE {PROBE} (id int)",
    ],
)
@pytest.mark.parametrize("service", list(SERVICE_PORTS))
async def test_a_service_login_cannot_change_the_schema(
    service_dsns: dict[str, str], service: str, statement: str
) -> None:
    conn = await connect(service_dsns[service])
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.mark.parametrize("service", list(SERVICE_PORTS))
async def test_a_service_login_reads_but_does_not_write_the_migration_record(
    services: ServiceProcesses, service_dsns: dict[str, str], service: str
) -> None:
    conn = await connect(service_dsns[service])
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") > 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM schema_migrations")
    finally:
        await conn.close()
