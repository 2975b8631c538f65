-- Documents a caseworker requested after the review (application.documents_requested, projected from
-- the reviews topic): the request names the kinds it needs, in order; the portal uploads one document
-- per kind (PUT /v1/applications/{id}/requests/{request_id}/documents/{n}), declaring each one's
-- digest, and the last arrival makes the application complete again (application.documents_supplied).
CREATE TABLE document_requests (
    request_id     text        PRIMARY KEY,  -- the application.documents_requested event id
    application_id text        NOT NULL,
    kinds          jsonb       NOT NULL,     -- ["cost_plan", ...]
    requested_at   timestamptz NOT NULL,
    answered_at    timestamptz               -- when the last requested document arrived
);
CREATE INDEX document_requests_of_application ON document_requests (application_id);

CREATE TABLE requested_arrivals (
    request_id   text        NOT NULL REFERENCES document_requests,
    document     int         NOT NULL CHECK (document >= 0),
    file_name    text        NOT NULL,
    media_type   text        NOT NULL,
    size_bytes   bigint      NOT NULL,
    digest       text        NOT NULL REFERENCES documents,
    arrived_at   timestamptz NOT NULL,
    PRIMARY KEY (request_id, document)
);
CREATE INDEX requested_arrivals_digest ON requested_arrivals (digest);
