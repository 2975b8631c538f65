"""Every PostgreSQL advisory lock id the project takes, in one place, so no two uses collide.

Advisory locks are per database; each service has its own database, but the runtime's locks are taken
in every one of them, so a service's own lock must never reuse a runtime id.
"""

from __future__ import annotations

from enum import IntEnum


class AdvisoryLock(IntEnum):
    # runtime: one migrator at a time per database; one outbox relay at a time (keeps the topic order).
    MIGRATION = 7_316_001
    OUTBOX_RELAY = 7_316_002
    # budget: one planner of the line at a time, so several instances never plan over the same money.
    BUDGET_LINE = 7_316_010
    # notify: one claimer of due notices at a time.
    NOTIFY_CLAIM = 7_316_041
    # intake, two-key locks inside its SQL functions (migrations 002 and 003, which spell the numbers):
    # one applicant's submissions at a time (with hashtext(ags)), one application's projection row
    # (with hashtext(application_id)). Listed so nothing else takes them.
    INTAKE_APPLICANT = 7_316_101
    INTAKE_PROJECTION = 7_316_102
    # intake: the watermark (services/intake/watermarks.py). Everything that stamps a place time and
    # stages or claims its event holds it shared; computing a watermark holds it exclusively, so it
    # sees every such stamp committed, or none taken yet.
    INTAKE_WATERMARK = 7_316_103
