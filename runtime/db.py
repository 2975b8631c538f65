"""PostgreSQL plumbing: a connection pool that waits for the database, and a migrations runner."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from runtime.locks import AdvisoryLock

if TYPE_CHECKING:
    import ssl
    from collections.abc import Awaitable, Callable, Iterable

log = logging.getLogger(__name__)

RUNTIME_MIGRATIONS = Path(__file__).parent / "migrations"

# Errors that say "the database is not there right now": a consumer retries the same event (never
# skips it), and an HTTP edge answers 503 database.unavailable with Retry-After (runtime.problems).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # A pooled connection the server dropped mid-statement (a database crash), reused before the pool
    # noticed: "cannot switch to state ...". The fault suite found it answering 500 instead of 503.
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,  # "terminating connection due to unexpected postmaster exit"
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    TimeoutError,
)


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    wait_seconds: float = 30.0,
    ssl: ssl.SSLContext | str | bool = False,
    reset: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> asyncpg.Pool:
    """Connect, retrying while the database is still starting. ``ssl`` comes from
    ``ServiceSettings.database_tls()``; it overrides any ``sslmode`` in the DSN. ``reset`` replaces
    asyncpg's reset of a released connection (None: asyncpg's own)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, command_timeout=30, ssl=ssl, reset=reset
            )
        except (OSError, asyncpg.CannotConnectNowError, asyncpg.PostgresConnectionError):
            if time.monotonic() > deadline:
                raise
            log.warning("database not reachable yet, retrying")
            await asyncio.sleep(0.5)


def migration_files(*directories: Path) -> list[tuple[str, Path]]:
    """(version, path) in apply order: the runtime's own tables first, then the service's."""
    return [(f"{d.parent.name}/{p.name}", p) for d in directories for p in sorted(d.glob("*.sql"))]


async def migrate(pool: asyncpg.Pool, *service_dirs: Path) -> list[str]:
    """Apply pending migrations, each in its own transaction; safe with several instances."""
    applied_now: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", AdvisoryLock.MIGRATION)
        try:
            # Only when missing: a runtime login without CREATE may call this once the owner has migrated.
            if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NULL"):
                await conn.execute(
                    "CREATE TABLE schema_migrations ("
                    " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, path in migration_files(RUNTIME_MIGRATIONS, *service_dirs):
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
                applied_now.append(version)
                log.info("migration applied", extra={"version": version})
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", AdvisoryLock.MIGRATION)
    return applied_now


async def grant_runtime(conn: asyncpg.Connection, role: str, *, append_only: Iterable[str] = ()) -> None:
    """Run by the owner after migrating: the runtime login may read and write every table of the
    public schema and use its sequences, but only read ``schema_migrations`` and only read and
    append to the ``append_only`` tables. TRUNCATE and DDL stay with the owner. Applied on every
    start, so tables a new migration creates are covered, and in one transaction, so no instance
    ever sees the append-only tables writable."""
    quoted = _quote_ident(role)
    async with conn.transaction():
        # Instances starting together would otherwise GRANT on the same tables at once, which
        # PostgreSQL refuses ("tuple concurrently updated").
        await conn.execute("SELECT pg_advisory_xact_lock($1)", AdvisoryLock.MIGRATION)
        await conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}")
        await conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}")
        await conn.execute(f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON schema_migrations FROM {quoted}")
        for table in append_only:
            await conn.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {_quote_ident(table)} FROM {quoted}")


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
