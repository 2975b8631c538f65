-- Portals and their credentials: only a SHA-256 hash of each token is stored.
CREATE TABLE portals (
    portal_id    text        PRIMARY KEY,
    token_sha256 bytea       NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

-- Application ids are TH-EGOV-<year>-<sequence>: unique across instances and restarts.
CREATE SEQUENCE application_number;

-- Idempotency-Key records: the same key and body get the same answer, another body 409.
-- The application id and event id are fixed on first use, so a retry after a lost
-- acknowledgement republishes the very same event (which every consumer de-duplicates).
CREATE TABLE idempotency_keys (
    portal_id       text        NOT NULL,
    idempotency_key text        NOT NULL,
    body_sha256     bytea       NOT NULL,
    application_id  text        NOT NULL,
    event_id        text        NOT NULL,
    received_at     timestamptz NOT NULL,
    response        jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (portal_id, idempotency_key)
);

-- The status read model: a projection of the application events.
CREATE TABLE application_status (
    application_id text        PRIMARY KEY,
    portal_id      text        NOT NULL,
    applicant_ags  text        NOT NULL,
    category       text        NOT NULL,
    amount_cents   bigint      NOT NULL,
    status         text        NOT NULL,
    status_rank    int         NOT NULL,
    received_at    timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX application_status_portal ON application_status (portal_id, received_at, application_id);

CREATE TABLE application_timeline (
    event_id       text        PRIMARY KEY,
    application_id text        NOT NULL,
    event_type     text        NOT NULL,
    status         text        NOT NULL,
    occurred_at    timestamptz NOT NULL,
    detail         jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX application_timeline_app ON application_timeline (application_id, occurred_at);
