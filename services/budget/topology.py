"""Where budget is attached: the topics it consumes and the directory of its migrations."""

from __future__ import annotations

from pathlib import Path

from schemas.topics import APPLICATIONS, REVIEWS

MIGRATIONS = Path(__file__).parent / "migrations"
# Receipts (on the applications topic) take their place in line, reviews settle it, withdrawals leave it.
LINE_TOPICS = [REVIEWS, APPLICATIONS]
