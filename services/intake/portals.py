"""Issue and revoke portal credentials. Only a hash of each token is stored.

python -m services.intake.portals issue PORTAL_ID   # prints the new token once
python -m services.intake.portals revoke PORTAL_ID
"""

from __future__ import annotations

import asyncio
import secrets
import sys

from runtime.db import create_pool, migrate
from services.intake.app import MIGRATIONS
from services.intake.settings import IntakeSettings
from services.intake.store import token_digest


async def issue(portal_id: str) -> str:
    token = f"egp_{secrets.token_urlsafe(32)}"
    pool = await create_pool(IntakeSettings().dsn)
    try:
        await migrate(pool, MIGRATIONS)
        await pool.execute(
            "INSERT INTO portals (portal_id, token_sha256) VALUES ($1, $2)"
            " ON CONFLICT (portal_id) DO UPDATE SET token_sha256 = EXCLUDED.token_sha256, revoked_at = NULL",
            portal_id,
            token_digest(token),
        )
    finally:
        await pool.close()
    return token


async def revoke(portal_id: str) -> bool:
    pool = await create_pool(IntakeSettings().dsn)
    try:
        result: str = await pool.execute("UPDATE portals SET revoked_at = now() WHERE portal_id = $1", portal_id)
    finally:
        await pool.close()
    return result.endswith(" 1")


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("issue", "revoke"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "issue":
        print(asyncio.run(issue(argv[1])))
        return 0
    return 0 if asyncio.run(revoke(argv[1])) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
