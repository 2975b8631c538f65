"""Crash points: the moments where a process dying hurts most, named so the fault suite can kill a
service exactly there instead of hoping a random SIGKILL lands on them.

Off unless ``EGOV_CRASH_POINTS_DIR`` is set (only the fault suite sets it). Then a file in that
directory named after a point arms it: the next pass through the point removes the file (so the
restarted process goes on) and SIGKILLs the process. Nothing is flushed or closed on the way out,
which is the point: a crash after the database commit and before the offset commit must leave
nothing that a redelivery cannot repair.

The points (README, "Fault suite"):
- ``consumer.after_commit``: a batch's transaction (inbox, state, outbox) has committed; its events
  are not published yet and its offsets are not committed.
- ``outbox.after_publish``: the broker has acknowledged the staged events; their outbox rows are
  not deleted yet, so they will be published again.
- ``notify.after_delivery``: a notice was handed to the mail server or the portal's endpoint; the
  delivery is not recorded yet, so it will be delivered again, under the same id.
- ``intake.after_publish``: a submission is on the log; the portal has not had its 202 yet.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

log = logging.getLogger(__name__)

POINTS = ("consumer.after_commit", "outbox.after_publish", "notify.after_delivery", "intake.after_publish")

_armed_dir = os.environ.get("EGOV_CRASH_POINTS_DIR")
DIRECTORY = Path(_armed_dir) if _armed_dir else None


def crash_point(point: str) -> None:
    """Die here if the fault suite armed this point; otherwise (always, outside the suite) nothing."""
    if DIRECTORY is None:
        return
    armed = DIRECTORY / point
    try:
        armed.unlink()
    except FileNotFoundError:
        return
    log.warning("crash point %s reached: dying on purpose (fault suite)", point)
    os.kill(os.getpid(), signal.SIGKILL)
