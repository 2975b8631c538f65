"""Issue and revoke portal credentials. Only a SHA-256 hash of each token is stored.

python -m services.intake.portals issue PORTAL_ID [--ags-prefix 16051 ...] [--rate 20 --burst 40]
    prints the new token once; --ags-prefix confines the portal to those applicants (repeatable,
    default: any Thuringian applicant); --rate/--burst override the default rate limit
python -m services.intake.portals revoke PORTAL_ID
    the token stops working within INTAKE_PORTAL_CACHE_SECONDS on every instance
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from runtime.credentials import new_token, token_digest
from runtime.db import create_pool, migrate
from services.intake.app import MIGRATIONS
from services.intake.settings import IntakeSettings


async def issue(
    portal_id: str, ags_prefixes: list[str] | None = None, rate: float | None = None, burst: int | None = None
) -> str:
    token = new_token("egp_")
    settings = IntakeSettings()
    pool = await create_pool(settings.dsn, ssl=settings.database_tls())
    try:
        await migrate(pool, MIGRATIONS)
        await pool.execute(
            "INSERT INTO portals (portal_id, token_sha256, ags_prefixes, rate_per_second, rate_burst)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (portal_id) DO UPDATE SET token_sha256 = EXCLUDED.token_sha256,"
            " ags_prefixes = EXCLUDED.ags_prefixes, rate_per_second = EXCLUDED.rate_per_second,"
            " rate_burst = EXCLUDED.rate_burst, revoked_at = NULL",
            portal_id,
            token_digest(token),
            ags_prefixes,
            rate,
            burst,
        )
    finally:
        await pool.close()
    return token


async def revoke(portal_id: str) -> bool:
    settings = IntakeSettings()
    pool = await create_pool(settings.dsn, ssl=settings.database_tls())
    try:
        result: str = await pool.execute("UPDATE portals SET revoked_at = now() WHERE portal_id = $1", portal_id)
    finally:
        await pool.close()
    return result.endswith(" 1")


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="python -m services.intake.portals", description=__doc__.split("\n")[0])
    commands = parse.add_subparsers(dest="command", required=True)
    issuing = commands.add_parser("issue", help="issue (or replace) a portal's token")
    issuing.add_argument("portal_id")
    issuing.add_argument("--ags-prefix", action="append", dest="ags_prefixes", metavar="PREFIX")
    issuing.add_argument("--rate", type=float, help="requests per second (default: INTAKE_RATE_LIMIT_PER_SECOND)")
    issuing.add_argument("--burst", type=int, help="burst size (default: INTAKE_RATE_LIMIT_BURST)")
    commands.add_parser("revoke", help="revoke a portal's token").add_argument("portal_id")
    return parse


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.command == "issue":
        print(asyncio.run(issue(args.portal_id, args.ags_prefixes, args.rate, args.burst)))
        return 0
    return 0 if asyncio.run(revoke(args.portal_id)) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
