"""Where intake is attached: the topics it consumes and the directory of its migrations.

The composition root (``app.py``) and the command-line tools (``portals``, ``statusview``) read
them from here, so a tool does not import the whole service to learn a topic list or a path.
"""

from __future__ import annotations

from pathlib import Path

from schemas.topics import APPLICATIONS, BUDGET, BUDGET_ADMIN, DECISIONS, NOTIFICATIONS, REVIEWS, SUBMISSIONS

MIGRATIONS = Path(__file__).parent / "migrations"
# Portals' signed submissions: the Kafka ingress.
SUBMISSION_TOPICS = [SUBMISSIONS]
# Categories paused and resumed by budget administrators: a receipt says whether its category is open.
CATEGORY_TOPICS = [BUDGET_ADMIN]
# Every topic that carries an event about an application: the status view is built from them alone.
STATUS_TOPICS = [APPLICATIONS, REVIEWS, BUDGET, DECISIONS, NOTIFICATIONS]
