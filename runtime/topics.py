"""Create every registry topic on the broker: ``python -m runtime.topics [BOOTSTRAP]``."""

from __future__ import annotations

import asyncio
import sys

from runtime.kafka import ensure_topics
from schemas.topics import ALL_TOPICS


def main() -> None:
    bootstrap = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:19092"
    created = asyncio.run(ensure_topics(bootstrap, ALL_TOPICS))
    print(f"topics: {len(ALL_TOPICS)} declared, {len(created)} created")


if __name__ == "__main__":
    main()
