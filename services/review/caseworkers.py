"""Issue and revoke caseworker credentials. Only a hash of each token is stored; the token is
printed once. The caseworker id is the principal every caseworker action is attributed to.

python -m services.review.caseworkers issue CASEWORKER_ID    # prints the new token once
python -m services.review.caseworkers revoke CASEWORKER_ID

Exit codes: 0 done (and for --help), 1 no such caseworker to revoke, 2 usage.
"""

from __future__ import annotations

import asyncio
import re
import sys

from runtime.credentials import new_token
from runtime.db import create_pool, migrate
from services.review import store
from services.review.domain import AUTOMATIC
from services.review.settings import ReviewSettings
from services.review.topology import MIGRATIONS

# Short, log-safe ids (e.g. "sb-mueller-3"); never an e-mail address.
CASEWORKER_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")


def valid_id(caseworker_id: str) -> bool:
    return bool(CASEWORKER_ID.match(caseworker_id)) and caseworker_id != AUTOMATIC


async def issue(caseworker_id: str) -> str:
    token = new_token("egc_")
    settings = ReviewSettings()
    pool = await create_pool(settings.dsn, ssl=settings.database_tls())
    try:
        await migrate(pool, MIGRATIONS)
        await store.save_caseworker_token(pool, caseworker_id, token)
    finally:
        await pool.close()
    return token


async def revoke(caseworker_id: str) -> bool:
    settings = ReviewSettings()
    pool = await create_pool(settings.dsn, ssl=settings.database_tls())
    try:
        return await store.revoke_caseworker(pool, caseworker_id)
    finally:
        await pool.close()


def main(argv: list[str]) -> int:
    if argv in (["--help"], ["-h"]):
        print(__doc__)
        return 0
    if len(argv) != 2 or argv[0] not in ("issue", "revoke"):
        print(__doc__, file=sys.stderr)
        return 2
    command, caseworker_id = argv
    if not valid_id(caseworker_id):
        print(f"invalid caseworker id {caseworker_id!r}: lower-case letters, digits, . _ -", file=sys.stderr)
        return 2
    if command == "issue":
        print(asyncio.run(issue(caseworker_id)))
        return 0
    return 0 if asyncio.run(revoke(caseworker_id)) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
