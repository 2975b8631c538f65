-- Idempotency-Key of the HTTP commands (runtime/idempotency.py), one table for every service that takes
-- them (review, budget, intake's withdrawals): the first answer, kept beside the key, is what a repeat
-- of the same request gets again. It was review's and budget's own 003 before; on their databases from
-- then the table is there already (same columns), so this creates it only where it is missing.
CREATE TABLE IF NOT EXISTS command_keys (
    principal      text        NOT NULL,
    key            text        NOT NULL,
    request_sha256 text        NOT NULL,
    status         integer,
    body           jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);
