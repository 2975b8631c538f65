"""Where review is attached: the topics it consumes and the directory of its migrations.

The composition root (``app.py``) and the command-line tools (``caseworkers``) read them from here.
"""

from __future__ import annotations

from pathlib import Path

from schemas.topics import APPLICATIONS

MIGRATIONS = Path(__file__).parent / "migrations"
# Every received application is reviewed automatically.
REVIEW_TOPICS = [APPLICATIONS]
