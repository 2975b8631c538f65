-- Inbox and outbox shared by every service that consumes or publishes through PostgreSQL.

-- The inbox: one row per handled event and consumer. Inserted in the same
-- transaction as the state change, so a redelivered event changes nothing.
CREATE TABLE processed_events (
    consumer     text        NOT NULL,
    event_id     text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- The outbox: events written with the state change, published by the relay,
-- deleted once the broker acknowledged them (the topic is the record).
CREATE TABLE outbox (
    id         bigserial   PRIMARY KEY,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    event_type text        NOT NULL,
    event_id   text        NOT NULL,
    value      bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
