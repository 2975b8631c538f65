-- Documents the municipality supplied on a caseworker's request (application.documents_supplied): the
-- case lists them after the announced attachments, and a caseworker reads them through review like
-- those (intake keeps the bytes). Their arrival put the case back in the queue.
CREATE TABLE supplied_documents (
    application_id text        NOT NULL,
    request_id     text        NOT NULL,
    document       int         NOT NULL,
    kind           text        NOT NULL,
    file_name      text        NOT NULL,
    media_type     text        NOT NULL,
    size_bytes     bigint      NOT NULL,
    digest         text        NOT NULL,
    supplied_at    timestamptz NOT NULL,
    PRIMARY KEY (application_id, request_id, document)
);
