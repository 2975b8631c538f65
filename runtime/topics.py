"""Create every registry topic on the broker: ``python -m runtime.topics [--bootstrap HOST:PORT]``.

Connects as the operator principal from ``EGOV_KAFKA_*`` (``runtime.settings.ToolSettings``); replication
comes from ``EGOV_KAFKA_REPLICATION_FACTOR`` and ``EGOV_KAFKA_MIN_INSYNC_REPLICAS`` (default 1/1, and 3/2
with ``EGOV_ENVIRONMENT=production``), for domain and dead-letter topics alike.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys

from runtime.kafka import ensure_topics
from runtime.settings import ToolSettings
from schemas.topics import ALL_TOPICS


def main(argv: list[str]) -> int:
    cli = argparse.ArgumentParser(
        prog="python -m runtime.topics",
        description=__doc__.split("\n")[0],
        epilog="Exit codes: 0 every topic exists, 1 failed (broker unreachable or refused), 2 usage.",
    )
    cli.add_argument("--bootstrap", help="Kafka bootstrap servers (default: EGOV_KAFKA_BOOTSTRAP)")
    args = cli.parse_args(argv)
    settings = ToolSettings()
    kafka = dataclasses.replace(settings.kafka, bootstrap=args.bootstrap) if args.bootstrap else settings.kafka
    created = asyncio.run(ensure_topics(kafka, ALL_TOPICS, settings.replication))
    replication = settings.replication
    print(
        f"topics: {len(ALL_TOPICS)} declared, {len(created)} created "
        f"(replication factor {replication.factor}, min.insync.replicas {replication.min_insync})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
