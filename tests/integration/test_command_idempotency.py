"""Idempotency-Key on the HTTP commands (runtime/idempotency.py) against the real PostgreSQL, in the
budget service's database: a repeat answers the first answer and does nothing, another request under
the same key is a 409, a refused command leaves its key free, and concurrent repeats run once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from pydantic import BaseModel

from runtime.commands import Command
from runtime.db import create_pool, migrate
from runtime.idempotency import Answer, Claim, answered, claim, fingerprint, first_answer, once, release
from runtime.outbox import Outgoing
from runtime.problems import Problem
from runtime.refusals import Refusal, Refused
from services.budget.topology import MIGRATIONS
from tests.support import TEST_SLOT, fresh_database

pytestmark = pytest.mark.integration


class Pot(BaseModel):
    fiscal_year: int
    pot_cents: int


@pytest.fixture
async def pool(pg_admin_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    dsn = await fresh_database(pg_admin_dsn, f"egov_test{TEST_SLOT}_command_keys")
    pool = await create_pool(dsn, max_size=4)
    await migrate(pool, MIGRATIONS)
    await pool.execute("CREATE TABLE effects (n serial PRIMARY KEY)")
    yield pool
    await pool.close()


def counting(status: int = 201) -> Command[Answer]:
    """A command whose every run leaves a row, and answers how many runs there were."""

    async def command(conn: asyncpg.Connection) -> tuple[Answer, list[Outgoing]]:
        n = await conn.fetchval("INSERT INTO effects DEFAULT VALUES RETURNING n")
        await asyncio.sleep(0.05)  # long enough for a concurrent repeat to arrive while this one runs
        return Answer(status, {"run": n}), []

    return command


async def run(pool: asyncpg.Pool, command: Command[Answer]) -> Answer:
    async with pool.acquire() as conn, conn.transaction():
        answer, _ = await command(conn)
    return answer


async def runs(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM effects"))


OPEN_2027 = fingerprint("POST", "/v1/fiscal-years", Pot(fiscal_year=2027, pot_cents=100))


async def test_a_repeat_with_the_same_key_and_body_answers_the_first_answer_and_does_nothing(
    pool: asyncpg.Pool,
) -> None:
    first = await run(pool, once(counting(), "admin:a", "key-1", OPEN_2027))
    again = await run(pool, once(counting(), "admin:a", "key-1", OPEN_2027))
    assert first == again == Answer(201, {"run": 1})
    assert await runs(pool) == 1
    # Another principal's same key is its own.
    assert await run(pool, once(counting(), "admin:b", "key-1", OPEN_2027)) == Answer(201, {"run": 2})


async def test_the_same_key_with_another_request_is_a_409(pool: asyncpg.Pool) -> None:
    await run(pool, once(counting(), "admin:a", "key-1", OPEN_2027))
    other = fingerprint("POST", "/v1/fiscal-years", Pot(fiscal_year=2027, pot_cents=101))
    with pytest.raises(Problem) as refused:
        await run(pool, once(counting(), "admin:a", "key-1", other))
    assert (refused.value.status, refused.value.code) == (409, "idempotency.key_reused")
    assert await runs(pool) == 1


async def test_a_refused_command_leaves_its_key_free(pool: asyncpg.Pool) -> None:
    async def refused(conn: asyncpg.Connection) -> tuple[Answer, list[Outgoing]]:
        raise Refused(Refusal.CONFLICT, "fiscal_year.already_open", "already open")

    with pytest.raises(Refused):
        await run(pool, once(refused, "admin:a", "key-1", OPEN_2027))
    assert await run(pool, once(counting(), "admin:a", "key-1", OPEN_2027)) == Answer(201, {"run": 1})


async def test_concurrent_repeats_run_the_command_once(pool: asyncpg.Pool) -> None:
    answers = await asyncio.gather(*(run(pool, once(counting(), "admin:a", "key-1", OPEN_2027)) for _ in range(4)))
    assert all(answer == Answer(201, {"run": 1}) for answer in answers)
    assert await runs(pool) == 1


def test_the_fingerprint_is_of_the_canonical_body() -> None:
    reordered = Pot.model_validate_json('{"pot_cents": 100,   "fiscal_year": 2027}')
    assert fingerprint("post", "/v1/fiscal-years", reordered) == OPEN_2027
    assert fingerprint("POST", "/v1/fiscal-years/2027/close") != fingerprint("POST", "/v1/fiscal-years/2028/close")


async def test_a_key_claimed_outside_the_transaction_is_answered_released_or_held(pool: asyncpg.Pool) -> None:
    """The claim of a command whose effect is a broker publish (intake's withdrawal)."""
    assert await claim(pool, "portal:a", "key-1", OPEN_2027) == Claim()
    # Unanswered: the first request is in flight, or its outcome is unknown.
    assert await claim(pool, "portal:a", "key-1", OPEN_2027) == Claim(earlier=True)
    other = fingerprint("POST", "/v1/fiscal-years", Pot(fiscal_year=2027, pot_cents=101))
    with pytest.raises(Problem) as refused:
        await claim(pool, "portal:a", "key-1", other)
    assert refused.value.code == "idempotency.key_reused"
    assert await first_answer(pool, "portal:a", "key-1") is None
    await answered(pool, "portal:a", "key-1", Answer(202, {"status": "withdrawn"}))
    assert await claim(pool, "portal:a", "key-1", OPEN_2027) == Claim(answer=Answer(202, {"status": "withdrawn"}))
    await release(pool, "portal:a", "key-1")  # an answered key is kept
    assert await first_answer(pool, "portal:a", "key-1") == Answer(202, {"status": "withdrawn"})
    assert await claim(pool, "portal:a", "key-2", OPEN_2027) == Claim()
    await release(pool, "portal:a", "key-2")  # refused: its retry is judged afresh
    assert await claim(pool, "portal:a", "key-2", other) == Claim()


async def test_a_database_from_before_the_shared_migration_keeps_its_keys(pool: asyncpg.Pool) -> None:
    """``command_keys`` was review's and budget's own 003: their databases have the table and that
    version, and the shared runtime migration must leave both alone."""
    assert await run(pool, once(counting(), "admin:a", "key-1", OPEN_2027)) == Answer(201, {"run": 1})
    await pool.execute("DELETE FROM schema_migrations WHERE version = 'runtime/002_command_keys.sql'")
    await pool.execute("INSERT INTO schema_migrations (version) VALUES ('budget/003_command_keys.sql')")
    assert await migrate(pool, MIGRATIONS) == ["runtime/002_command_keys.sql"]
    assert await run(pool, once(counting(), "admin:a", "key-1", OPEN_2027)) == Answer(201, {"run": 1})
    assert await runs(pool) == 1
