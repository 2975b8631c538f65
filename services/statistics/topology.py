"""Where statistics is attached: the topics it counts from. All are keyed by application id with the
same partition count, so one application's events meet in one partition of each (faust's tables need it)."""

from __future__ import annotations

from schemas.topics import APPLICATIONS, BUDGET, DECISIONS

SOURCE_TOPICS = [APPLICATIONS, BUDGET, DECISIONS]
PARTITIONS = DECISIONS.partitions
assert all(t.partitions == PARTITIONS for t in SOURCE_TOPICS), "statistics' sources must be co-partitioned"
