-- Portal callbacks, per-destination delivery, waitlist promotions.

-- Where each portal wants its callbacks. Owned by notify and written only by the operator CLI
-- (python -m services.notify.endpoints): no URL from a submission is ever called. The secret is
-- kept in clear because HMAC needs it to sign; it is never logged.
CREATE TABLE callback_endpoints (
    portal_id  text        PRIMARY KEY,
    url        text        NOT NULL,
    secret     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- Applications told a waitlist position; a later reservation for them is a promotion.
CREATE TABLE waitlisted (
    application_id text    PRIMARY KEY,
    amount_cents   bigint  NOT NULL,
    promoted       boolean NOT NULL DEFAULT false
);

-- A submission rejected at intake has no application id: event_key is what the notification
-- events are keyed by (the application id, or the rejected submission's subject).
-- destination groups notices for per-receiver concurrency ('email', 'callback:<portal>'); it is
-- NULL while the receiver is not known yet (an event handled before the application's receipt).
-- leased_until marks an attempt in flight; window_started_at starts the age limit (reset by an
-- operator replay).
ALTER TABLE notices
    ALTER COLUMN application_id DROP NOT NULL,
    ADD COLUMN event_key text,
    ADD COLUMN portal_id text,
    ADD COLUMN destination text,
    ADD COLUMN callback_body bytea,
    ADD COLUMN leased_until timestamptz,
    ADD COLUMN window_started_at timestamptz NOT NULL DEFAULT now();
UPDATE notices SET event_key = application_id, destination = channel;
ALTER TABLE notices ALTER COLUMN event_key SET NOT NULL;

-- The claim walks the destinations with pending notices, then each one's due notices in order.
DROP INDEX notices_due;
CREATE INDEX notices_due ON notices (destination, next_attempt_at) WHERE status = 'pending';
CREATE INDEX notices_in_flight ON notices (destination, leased_until) WHERE status = 'pending';
CREATE INDEX notices_unresolved ON notices (application_id) WHERE destination IS NULL;
