"""Intake's domain metrics (the shared ``egov_*`` plumbing metrics live in runtime.metrics).

Labels are bounded sets: a category id from the rules file, a channel, an error code.
"""

from __future__ import annotations

from prometheus_client import Counter

APPLICATIONS_RECEIVED = Counter(
    "egov_applications_received_total", "Applications accepted at intake (received event acknowledged)", ["category"]
)
SUBMISSIONS_REFUSED = Counter(
    "egov_intake_submissions_refused_total",
    "Submissions refused at intake, by channel (http, kafka) and problem code",
    ["channel", "code"],
)
