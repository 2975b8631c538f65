"""Operator redelivery of notices that were given up (they are on egov.notify.deadletter.v1).

    python -m services.notify.redeliver NOTICE_ID [NOTICE_ID ...]

Each failed notice becomes due again with a fresh attempt budget and age limit. It keeps its
id, so a receiver that did get an earlier attempt de-duplicates it. Reads NOTIFY_DATABASE_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import uuid

import asyncpg

from services.notify import store
from services.notify.settings import NotifySettings

log = logging.getLogger(__name__)


async def redeliver(dsn: str, notice_ids: list[uuid.UUID]) -> int:
    """How many of the notices were failed and are pending again."""
    conn = await asyncpg.connect(dsn)
    try:
        due_again = 0
        for notice_id in notice_ids:
            row = await store.due_again(conn, notice_id)
            if row is None:
                print(f"{notice_id}: not found or not failed, left alone", file=sys.stderr)
                continue
            due_again += 1
            print(f"{notice_id}: {row['notice_type']} via {row['channel']} is due again (was: {row['last_error']})")
            log.info("notice replayed", extra={"notice_type": row["notice_type"], "channel": row["channel"]})
        return due_again
    finally:
        await conn.close()


def main(argv: list[str]) -> int:
    cli = argparse.ArgumentParser(
        prog="python -m services.notify.redeliver",
        description=__doc__.split("\n")[0],
        epilog="Exit codes: 0 every notice is due again, 1 some notice was not found or had not failed, 2 usage.",
    )
    cli.add_argument("notice_ids", nargs="+", type=uuid.UUID, metavar="NOTICE_ID")
    args = cli.parse_args(argv)
    due_again = asyncio.run(redeliver(NotifySettings().dsn, args.notice_ids))
    return 0 if due_again == len(args.notice_ids) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
