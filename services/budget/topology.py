"""Where budget is attached: the topics it consumes and the directory of its migrations."""

from __future__ import annotations

from pathlib import Path

from schemas.topics import APPLICATIONS, REVIEWS

MIGRATIONS = Path(__file__).parent / "migrations"
# Reviews bring eligible applications into the line; withdrawals (on the applications topic) release.
LINE_TOPICS = [REVIEWS, APPLICATIONS]
