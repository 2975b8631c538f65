"""Where notify is attached: the topics it consumes and the directory of its migrations.

The composition root (``app.py``) and the command-line tools (``endpoints``, ``redeliver``) read them
from here.
"""

from __future__ import annotations

from pathlib import Path

from schemas.topics import APPLICATIONS, BUDGET, DECISIONS, REVIEWS

MIGRATIONS = Path(__file__).parent / "migrations"
# Every event a municipality must hear about.
NOTICE_TOPICS = [APPLICATIONS, REVIEWS, BUDGET, DECISIONS]
