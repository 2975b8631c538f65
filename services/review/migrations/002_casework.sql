-- The caseworker's queue: who may act, the cases that need a person, and what each caseworker did.

-- Principals of the caseworker role. Only a hash of each bearer token is stored.
CREATE TABLE caseworkers (
    caseworker_id text        PRIMARY KEY,
    token_sha256  bytea       NOT NULL UNIQUE,
    issued_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

-- One row per application the automatic review sent to a person.
CREATE TABLE cases (
    application_id   text        PRIMARY KEY REFERENCES reviews (application_id),
    status           text        NOT NULL CHECK (status IN ('open', 'waiting_documents', 'proposed', 'decided')),
    four_eyes        boolean     NOT NULL,  -- the amount is above the rules version's threshold
    early_start      boolean     NOT NULL,  -- an early start was requested: its own decision
    proposal         jsonb,                 -- outcome, justification, early_start_permitted, caseworker
    proposed_by      text,
    decided_outcome  text        CHECK (decided_outcome IN ('eligible', 'ineligible')),
    decided_by       text,
    decided_at       timestamptz,
    last_event_id    text        NOT NULL,  -- the newest event about the case: the next one's cause
    updated_at       timestamptz NOT NULL,
    CHECK (status <> 'proposed' OR (proposal IS NOT NULL AND proposed_by IS NOT NULL)),
    CHECK ((status = 'decided') = (decided_outcome IS NOT NULL AND decided_by IS NOT NULL)),
    -- Four eyes, held by the database as well: a decision above the threshold needs a proposal
    -- by one caseworker and the confirmation of another.
    CHECK (NOT four_eyes OR status <> 'decided' OR (proposed_by IS NOT NULL AND decided_by <> proposed_by))
);
CREATE INDEX cases_waiting ON cases (status) WHERE status <> 'decided';

-- Every caseworker action, oldest first; the events on the topic are the audit log, this is the case's history view.
CREATE TABLE case_actions (
    id             bigserial   PRIMARY KEY,
    application_id text        NOT NULL REFERENCES cases (application_id),
    action         text        NOT NULL CHECK (action IN ('proposed', 'decided', 'confirmed', 'documents_requested')),
    caseworker_id  text        NOT NULL,
    detail         jsonb       NOT NULL,
    event_id       text        NOT NULL,
    at             timestamptz NOT NULL
);
CREATE INDEX case_actions_of_case ON case_actions (application_id, id);

-- Cases reviewed before this migration enter the queue open.
INSERT INTO cases (application_id, status, four_eyes, early_start, last_event_id, updated_at)
SELECT application_id,
       'open',
       findings @> '[{"rule_id": "R09-four-eyes", "needs_person": true}]',
       findings @> '[{"rule_id": "R06-not-started", "needs_person": true}]',
       'unknown',
       reviewed_at
FROM reviews WHERE outcome = 'needs_manual_review';
