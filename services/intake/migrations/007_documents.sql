-- Documents: the attachments an application announces arrive later, each checked against its announcement.

-- The announcement (file name, media type, size, kind, digest of each attachment) as submitted; an
-- upload is checked against it. Written with the status row, so a portal can upload right after its 202.
ALTER TABLE application_status ADD COLUMN attachments jsonb NOT NULL DEFAULT '[]';

-- The PostgreSQL documents store (services/intake/documents_store.py): content addressed by the
-- announced digest ("sha256:<hex>" or "sha512:<hex>"), the bytes in chunks of at most 1 MiB so neither
-- intake nor the database ever holds a whole document in one value. A `documents` row exists only once
-- every chunk was written and the bytes matched the digest, in the same transaction as the chunks.
CREATE TABLE documents (
    digest      text        PRIMARY KEY,
    size_bytes  bigint      NOT NULL CHECK (size_bytes > 0),
    chunk_count int         NOT NULL CHECK (chunk_count > 0),
    stored_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE document_chunks (
    digest text  NOT NULL,
    seq    int   NOT NULL,
    bytes  bytea NOT NULL,
    PRIMARY KEY (digest, seq)
);
-- PDFs and images are compressed already: storing them out of line without another compression
-- attempt saves CPU on every upload.
ALTER TABLE document_chunks ALTER COLUMN bytes SET STORAGE EXTERNAL;

-- An announced attachment that arrived, and the document that answers it. The arrival time is the
-- answer to every repeat of the upload (idempotent), and the latest one is the application's
-- complete time. A document is removed with its last arrival (docs/retention.md).
CREATE TABLE attachment_arrivals (
    application_id text        NOT NULL,
    attachment     int         NOT NULL CHECK (attachment >= 0),
    digest         text        NOT NULL REFERENCES documents,
    arrived_at     timestamptz NOT NULL,
    PRIMARY KEY (application_id, attachment)
);
CREATE INDEX attachment_arrivals_digest ON attachment_arrivals (digest);
