-- Who to tell about an application. Personal data lives here only, never in logs.
CREATE TABLE recipients (
    application_id text PRIMARY KEY,
    portal_id      text NOT NULL,
    email          text NOT NULL
);

-- One row per notice and channel. notice_id is derived from the causing event and the
-- channel, so a redelivered event cannot create a second notice with a new identity.
CREATE TABLE notices (
    notice_id       uuid        PRIMARY KEY,
    application_id  text        NOT NULL,
    notice_type     text        NOT NULL,
    channel         text        NOT NULL,
    subject         text        NOT NULL,
    body_text       text        NOT NULL,
    body_html       text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        int         NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    cause_event_id  text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX notices_due ON notices (next_attempt_at) WHERE status = 'pending';
