-- Idempotency-Key of the HTTP commands (runtime/idempotency.py): the first answer, kept beside the
-- key in the command's own transaction, is what a repeat of the same request gets again.
CREATE TABLE command_keys (
    principal      text        NOT NULL,
    key            text        NOT NULL,
    request_sha256 text        NOT NULL,
    status         integer,
    body           jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);
