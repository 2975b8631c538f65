"""Rebuild the status view from the topics, which keep every application event forever.

The view (``application_status``, ``application_timeline``) is only a projection of those events,
made by the consumer group ``intake-<INTAKE_STATUS_VIEW>`` (default ``intake-status``).

In place, with every intake instance stopped (a group with live members refuses the rewind):

    python -m services.intake.statusview rebuild

rewinds the group to the start of every topic it reads, empties the view and forgets which events
the view had handled (its inbox rows). The next start replays the whole log; ``/ready`` answers 503
until the view has caught up. Without downtime, start the instances with a new view name instead
(``INTAKE_STATUS_VIEW=status-2``): a new group and inbox replay every event into the same tables,
which only moves statuses forward and adds missing timeline entries, so it repairs lost rows but
not rows that were corrupted to a later state; those need the in-place rebuild.

Exit codes: 0 rebuilt (and for --help), 1 failed (a live instance still in the group, say), 2 usage.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition

from runtime.db import create_pool
from runtime.kafka import KafkaAccess, consumer_group, make_admin
from services.intake.settings import IntakeSettings
from services.intake.topology import STATUS_TOPICS

if TYPE_CHECKING:
    from schemas.topics import Topic


async def partitions_of(kafka: KafkaAccess, topics: list[Topic]) -> list[TopicPartition]:
    admin = make_admin(kafka, "intake-statusview")
    await admin.start()
    try:
        described = await admin.describe_topics([t.name for t in topics])
    finally:
        await admin.close()
    return sorted(TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"])


async def rewind(kafka: KafkaAccess, group: str) -> int:
    """Commit the earliest offset of every partition for the group; the number of partitions."""
    partitions = await partitions_of(kafka, STATUS_TOPICS)
    consumer = AIOKafkaConsumer(**kafka.client_options(), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        earliest = await consumer.beginning_offsets(partitions)
        await consumer.commit(earliest)
        return len(partitions)
    finally:
        await consumer.stop()


async def rebuild(settings: IntakeSettings) -> str:
    group = consumer_group("intake", settings.consumer_group_prefix, settings.status_view)
    partitions = await rewind(settings.kafka, group)
    pool = await create_pool(settings.dsn, max_size=2, ssl=settings.database_tls())
    try:
        async with pool.acquire() as conn, conn.transaction():
            # DELETE, not TRUNCATE: the runtime login has no TRUNCATE (README "PostgreSQL roles").
            await conn.execute("DELETE FROM application_timeline")
            await conn.execute("DELETE FROM application_status")
            await conn.execute("DELETE FROM processed_events WHERE consumer = $1", group)
    finally:
        await pool.close()
    return f"status view emptied; {group} rewound on {partitions} partitions: the next start replays the topics"


def main(argv: list[str]) -> int:
    if argv in (["--help"], ["-h"]):
        print(__doc__)
        return 0
    if argv != ["rebuild"]:
        print(__doc__, file=sys.stderr)
        return 2
    print(asyncio.run(rebuild(IntakeSettings())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
