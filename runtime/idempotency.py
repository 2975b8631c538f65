"""``Idempotency-Key`` for the state-changing POSTs of caseworkers and administrators.

The same key with the same request (method, path and canonical body: parsed, then serialised with
sorted keys, so key order and whitespace do not matter) answers the first answer again and changes
nothing; the same key with another request is refused with 409 ``idempotency.key_reused``. The key
is claimed in the command's own transaction, so a concurrent repeat waits for the first and then
replays it, and a refused command (its transaction rolled back) leaves the key free: a retry is
judged afresh. Keys are per principal and kept for a day (``command_keys``, a runtime migration
every service has).

A command whose effect leaves the database (intake's withdrawal: a broker publish with acks=all)
cannot hold the key in its transaction, so it ``claim``s the key first, then records the answer
(``answered``) or, refused, frees the key (``release``). A key whose earlier request has no answer
yet is either still in flight or ended without a known outcome (503 ``broker.outcome_unknown``, a
crash): the claim says so, and the command waits for the first or finishes its work, never doing it
twice (its effect must itself be repeatable, as a withdrawal is: the same event id and time).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Header
from fastapi.responses import JSONResponse

from runtime.problems import Problem

if TYPE_CHECKING:
    import asyncpg
    from pydantic import BaseModel

    from runtime.commands import Command
    from runtime.outbox import Outgoing

KEY_DESCRIPTION = (
    "Same key and same request (canonical body): the first answer again, nothing done twice. "
    "Same key, another request: 409 `idempotency.key_reused`. Kept for 24 hours per principal."
)
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200, description=KEY_DESCRIPTION)
]


@dataclass(frozen=True)
class Answer:
    """A command's HTTP answer, as stored beside its key."""

    status: int
    body: Any

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status)


def fingerprint(method: str, path: str, body: BaseModel | None = None) -> str:
    canonical = json.dumps(
        [method.upper(), path, body.model_dump(mode="json") if body is not None else None],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def key_reused() -> Problem:
    return Problem(409, "idempotency.key_reused", "This Idempotency-Key was used for another request")


def once(command: Command[Answer], principal: str, key: str | None, request: str) -> Command[Answer]:
    """``command`` run at most once per (principal, key); ``request`` is its ``fingerprint``."""
    if key is None:
        return command

    async def keyed(conn: asyncpg.Connection) -> tuple[Answer, list[Outgoing]]:
        await conn.execute(
            "DELETE FROM command_keys WHERE principal = $1 AND key = $2 AND created_at < now() - interval '1 day'",
            principal,
            key,
        )
        claimed = await conn.fetchval(
            "INSERT INTO command_keys (principal, key, request_sha256) VALUES ($1, $2, $3)"
            " ON CONFLICT (principal, key) DO NOTHING RETURNING true",
            principal,
            key,
            request,
        )
        if not claimed:
            return await replay(conn, principal, key, request), []
        answer, outgoing = await command(conn)
        await conn.execute(
            "UPDATE command_keys SET status = $3, body = $4 WHERE principal = $1 AND key = $2",
            principal,
            key,
            answer.status,
            json.dumps(answer.body),
        )
        return answer, list(outgoing)

    return keyed


async def replay(conn: asyncpg.Connection, principal: str, key: str, request: str) -> Answer:
    row = await conn.fetchrow(
        "SELECT request_sha256, status, body FROM command_keys WHERE principal = $1 AND key = $2", principal, key
    )
    if row is None or row["request_sha256"] != request or row["status"] is None:
        raise key_reused()
    return Answer(row["status"], json.loads(row["body"]))


@dataclass(frozen=True)
class Claim:
    """What claiming a key for a command outside the transaction found."""

    answer: Answer | None = None  # the key's first answer: give it again, do nothing
    earlier: bool = False  # an earlier request holds the key without an answer: in flight, or its outcome unknown


async def claim(pool: asyncpg.Pool, principal: str, key: str, request: str) -> Claim:
    """Claim ``key`` for ``request`` (its ``fingerprint``); 409 ``idempotency.key_reused`` if another request has it."""
    async with pool.acquire() as conn:
        await conn.execute(
            "DELETE FROM command_keys WHERE principal = $1 AND key = $2 AND created_at < now() - interval '1 day'",
            principal,
            key,
        )
        while True:
            claimed = await conn.fetchval(
                "INSERT INTO command_keys (principal, key, request_sha256) VALUES ($1, $2, $3)"
                " ON CONFLICT (principal, key) DO NOTHING RETURNING true",
                principal,
                key,
                request,
            )
            if claimed:
                return Claim()
            row = await conn.fetchrow(
                "SELECT request_sha256, status, body FROM command_keys WHERE principal = $1 AND key = $2",
                principal,
                key,
            )
            if row is None:
                continue  # the earlier request was refused and let the key go in between: claim it again
            if row["request_sha256"] != request:
                raise key_reused()
            if row["status"] is None:
                return Claim(earlier=True)
            return Claim(answer=Answer(row["status"], json.loads(row["body"])))


async def first_answer(pool: asyncpg.Pool, principal: str, key: str) -> Answer | None:
    """The key's answer once its earlier request has one (the caller holds the same request)."""
    row = await pool.fetchrow(
        "SELECT status, body FROM command_keys WHERE principal = $1 AND key = $2 AND status IS NOT NULL",
        principal,
        key,
    )
    return None if row is None else Answer(row["status"], json.loads(row["body"]))


async def answered(pool: asyncpg.Pool, principal: str, key: str, answer: Answer) -> None:
    await pool.execute(
        "UPDATE command_keys SET status = $3, body = $4 WHERE principal = $1 AND key = $2",
        principal,
        key,
        answer.status,
        json.dumps(answer.body),
    )


async def release(pool: asyncpg.Pool, principal: str, key: str) -> None:
    """A refused request keeps no key: its retry is judged afresh."""
    await pool.execute("DELETE FROM command_keys WHERE principal = $1 AND key = $2 AND status IS NULL", principal, key)
