"""``Idempotency-Key`` for the state-changing POSTs of caseworkers and administrators.

The same key with the same request (method, path and canonical body: parsed, then serialised with
sorted keys, so key order and whitespace do not matter) answers the first answer again and changes
nothing; the same key with another request is refused with 409 ``idempotency.key_reused``. The key
is claimed in the command's own transaction, so a concurrent repeat waits for the first and then
replays it, and a refused command (its transaction rolled back) leaves the key free: a retry is
judged afresh. Keys are per principal and kept for a day (``command_keys``, each service's own
migration).
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
