-- One row per reviewed application: the primary key makes a second review result impossible.
CREATE TABLE reviews (
    application_id  text        PRIMARY KEY,
    applicant_ags   text[]      NOT NULL,  -- lead first, then partners
    category        text        NOT NULL,
    fiscal_years    int[]       NOT NULL,
    amount_cents    bigint      NOT NULL,
    outcome         text        NOT NULL CHECK (outcome IN ('eligible', 'ineligible', 'needs_manual_review')),
    rules_version   text        NOT NULL,
    findings        jsonb       NOT NULL,
    received_at     timestamptz NOT NULL,
    reviewed_at     timestamptz NOT NULL,
    received_event  jsonb       NOT NULL,   -- the case as received, for the caseworker and "what if" replays
    open            boolean     NOT NULL DEFAULT true
);
CREATE INDEX reviews_same_measure ON reviews USING gin (applicant_ags) WHERE open;
CREATE INDEX reviews_manual_queue ON reviews (received_at) WHERE outcome = 'needs_manual_review';
