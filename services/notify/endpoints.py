"""The registry of portal callback endpoints: only URLs registered here are ever called.

    python -m services.notify.endpoints register PORTAL_ID URL   # prints the signing secret, once
    python -m services.notify.endpoints revoke PORTAL_ID
    python -m services.notify.endpoints list

Registering a portal again replaces its URL and issues a new secret. The URL must be HTTPS to a
host whose every address is public (``destinations``); loopback, also over plain HTTP, only with
NOTIFY_ALLOW_LOOPBACK_CALLBACKS=true outside production (local receivers). Reads
NOTIFY_DATABASE_URL and NOTIFY_ALLOW_LOOPBACK_CALLBACKS like the service.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from runtime.db import migrate
from services.notify import destinations, store, webhooks
from services.notify.settings import NotifySettings
from services.notify.topology import MIGRATIONS


async def register(
    conn: asyncpg.Connection,
    portal_id: str,
    url: str,
    *,
    allow_loopback: bool = False,
    resolve: destinations.Resolve = destinations.system_resolve,
) -> str:
    """The new secret, or DestinationRefused: the URL's form and every address its host has now
    are checked (delivery checks again: the name may be re-pointed later)."""
    target = destinations.check_url(url, allow_loopback=allow_loopback)
    try:
        await destinations.resolve_public(target.host, target.port, resolve, allow_loopback=allow_loopback)
    except OSError:
        raise destinations.DestinationRefused("the callback host does not resolve") from None
    secret = webhooks.new_secret()
    await store.register_endpoint(conn, portal_id, url, secret)
    return secret


async def run(args: argparse.Namespace, settings: NotifySettings) -> int:
    pool = await asyncpg.create_pool(settings.dsn, min_size=1, max_size=1, ssl=settings.database_tls())
    try:
        await migrate(pool, MIGRATIONS)
        async with pool.acquire() as conn:
            if args.command == "register":
                try:
                    secret = await register(
                        conn, args.portal_id, args.url, allow_loopback=settings.allow_loopback_callbacks
                    )
                except ValueError as err:
                    print(f"refused: {err}", file=sys.stderr)
                    return 2
                print(secret)
                print(f"registered {args.portal_id}; keep the secret, it is not shown again", file=sys.stderr)
                return 0
            if args.command == "revoke":
                revoked = await store.revoke_endpoint(conn, args.portal_id)
                print("revoked" if revoked else f"no active endpoint for {args.portal_id}", file=sys.stderr)
                return 0 if revoked else 1
            for row in await store.endpoints(conn):
                state = f"revoked {row['revoked_at']:%Y-%m-%d %H:%M}" if row["revoked_at"] else "active"
                print(f"{row['portal_id']}\t{row['url']}\t{state}")
            return 0
    finally:
        await pool.close()


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="python -m services.notify.endpoints",
        description=__doc__.split("\n")[0],
        epilog="Exit codes: 0 done, 1 no active endpoint to revoke, 2 usage or a URL refused (register).",
    )
    commands = cli.add_subparsers(dest="command", required=True)
    register_cmd = commands.add_parser("register", help="register or replace a portal's callback URL")
    register_cmd.add_argument("portal_id")
    register_cmd.add_argument("url")
    commands.add_parser("revoke", help="stop calling a portal").add_argument("portal_id")
    commands.add_parser("list", help="show registered endpoints (never their secrets)")
    return cli


def main(argv: list[str]) -> int:
    return asyncio.run(run(parser().parse_args(argv), NotifySettings()))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
