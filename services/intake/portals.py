"""Issue and revoke portal credentials: a bearer token (stored as a SHA-256 hash) and a Kafka signing secret.

python -m services.intake.portals issue PORTAL_ID [--ags-prefix 16051 ...] [--rate 20 --burst 40]
    prints the new token and the new submission-signing secret once; replaces both if the portal exists.
    --ags-prefix confines the portal to those applicants (repeatable, default: any Thuringian applicant);
    --rate/--burst override the default rate limit
python -m services.intake.portals rotate-signing-key PORTAL_ID [--old-valid-hours 168]
    prints a new signing secret; the older ones keep verifying for --old-valid-hours (0: stop now)
python -m services.intake.portals rotate-signing-key PORTAL_ID --retire-old
    ends a rotation: every key but the newest stops verifying now; no new secret
python -m services.intake.portals revoke PORTAL_ID
    the token stops working within INTAKE_PORTAL_CACHE_SECONDS on every instance, its signatures at once

The signing secret is an HMAC key, so intake must keep it (not a hash): the intake database holds it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from runtime.credentials import new_token, token_digest
from runtime.db import create_pool, migrate
from runtime.record_signatures import decode_secret, new_secret
from services.intake.settings import IntakeSettings
from services.intake.topology import MIGRATIONS

if TYPE_CHECKING:
    import asyncpg

DEFAULT_OVERLAP = timedelta(days=7)


@dataclass(frozen=True)
class Issued:
    token: str
    signing_secret: str


def signing_key_id(secret: str) -> str:
    """Names a key in the database and in messages without revealing it."""
    return "sk-" + hashlib.sha256(decode_secret(secret)).hexdigest()[:16]


async def add_signing_key(conn: asyncpg.Connection, portal_id: str, old_valid_for: timedelta | None) -> str:
    """A new active key; older keys expire after ``old_valid_for`` (None: they are deleted now)."""
    secret = new_secret()
    if old_valid_for is None:
        await conn.execute("DELETE FROM portal_signing_keys WHERE portal_id = $1", portal_id)
    else:
        await conn.execute(
            "UPDATE portal_signing_keys SET retire_at = least(coalesce(retire_at, 'infinity'), now() + $2)"
            " WHERE portal_id = $1",
            portal_id,
            old_valid_for,
        )
    await conn.execute(
        "INSERT INTO portal_signing_keys (portal_id, key_id, secret) VALUES ($1, $2, $3)",
        portal_id,
        signing_key_id(secret),
        decode_secret(secret),
    )
    return secret


async def issue(
    portal_id: str, ags_prefixes: list[str] | None = None, rate: float | None = None, burst: int | None = None
) -> Issued:
    token = new_token("egp_")
    settings = IntakeSettings()
    pool = await create_pool(settings.dsn, ssl=settings.database_tls())
    try:
        await migrate(pool, MIGRATIONS)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO portals (portal_id, token_sha256, ags_prefixes, rate_per_second, rate_burst)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (portal_id) DO UPDATE"
                " SET token_sha256 = EXCLUDED.token_sha256, ags_prefixes = EXCLUDED.ags_prefixes,"
                " rate_per_second = EXCLUDED.rate_per_second, rate_burst = EXCLUDED.rate_burst, revoked_at = NULL",
                portal_id,
                token_digest(token),
                ags_prefixes,
                rate,
                burst,
            )
            secret = await add_signing_key(conn, portal_id, None)  # issuing replaces every credential
    finally:
        await pool.close()
    return Issued(token, secret)


async def rotate_signing_key(portal_id: str, old_valid_for: timedelta) -> str | None:
    """The new secret, or None if there is no such portal."""
    pool = await create_pool(IntakeSettings().dsn)
    try:
        await migrate(pool, MIGRATIONS)
        async with pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT true FROM portals WHERE portal_id = $1 FOR UPDATE", portal_id):
                return None
            return await add_signing_key(conn, portal_id, old_valid_for)
    finally:
        await pool.close()


async def retire_old_signing_keys(portal_id: str) -> int:
    """Every key but the newest stops verifying now; returns how many were still active."""
    pool = await create_pool(IntakeSettings().dsn)
    try:
        result: str = await pool.execute(
            "UPDATE portal_signing_keys SET retire_at = now() WHERE portal_id = $1"
            " AND (retire_at IS NULL OR retire_at > now()) AND key_id <> (SELECT key_id FROM portal_signing_keys"
            " WHERE portal_id = $1 ORDER BY created_at DESC LIMIT 1)",
            portal_id,
        )
    finally:
        await pool.close()
    return int(result.split()[-1])


async def revoke(portal_id: str) -> bool:
    settings = IntakeSettings()
    pool = await create_pool(settings.dsn, ssl=settings.database_tls())
    try:
        result: str = await pool.execute("UPDATE portals SET revoked_at = now() WHERE portal_id = $1", portal_id)
    finally:
        await pool.close()
    return result.endswith(" 1")


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="python -m services.intake.portals",
        description=__doc__.split("\n")[0],
        epilog="Exit codes: 0 done, 1 no such portal (revoke, rotate-signing-key), 2 usage.",
    )
    commands = parse.add_subparsers(dest="command", required=True)
    issuing = commands.add_parser("issue", help="issue (or replace) a portal's token and signing secret")
    issuing.add_argument("portal_id")
    issuing.add_argument("--ags-prefix", action="append", dest="ags_prefixes", metavar="PREFIX")
    issuing.add_argument("--rate", type=float, help="requests per second (default: INTAKE_RATE_LIMIT_PER_SECOND)")
    issuing.add_argument("--burst", type=int, help="burst size (default: INTAKE_RATE_LIMIT_BURST)")
    rotating = commands.add_parser("rotate-signing-key", help="a new signing secret; older ones expire")
    rotating.add_argument("portal_id")
    rotating.add_argument(
        "--old-valid-hours", type=float, default=DEFAULT_OVERLAP.total_seconds() / 3600, help="default: 168"
    )
    rotating.add_argument("--retire-old", action="store_true", help="end the rotation: only the newest key verifies")
    commands.add_parser("revoke", help="revoke a portal's token and signatures").add_argument("portal_id")
    return parse


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.command == "issue":
        issued = asyncio.run(issue(args.portal_id, args.ags_prefixes, args.rate, args.burst))
        print(f"token:          {issued.token}\nsigning secret: {issued.signing_secret}")
        print("Both are shown once only; hand them to the portal over a secure channel.", file=sys.stderr)
        return 0
    if args.command == "rotate-signing-key":
        if args.retire_old:
            print(f"{asyncio.run(retire_old_signing_keys(args.portal_id))} older key(s) retired", file=sys.stderr)
            return 0
        secret = asyncio.run(rotate_signing_key(args.portal_id, timedelta(hours=max(0.0, args.old_valid_hours))))
        if secret is None:
            print(f"no portal {args.portal_id}", file=sys.stderr)
            return 1
        print(secret)
        print(f"older keys keep verifying for {args.old_valid_hours:g} h; shown once only", file=sys.stderr)
        return 0
    return 0 if asyncio.run(revoke(args.portal_id)) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
