-- Secrets portals sign their Kafka submissions with (Standard Webhooks HMAC, see runtime.record_signatures).
-- Unlike a bearer token, an HMAC secret cannot be kept as a hash: intake must hold it to verify, so this
-- database is the secret's custody. A portal has more than one active key only while it rotates.
CREATE TABLE portal_signing_keys (
    portal_id  text        NOT NULL REFERENCES portals (portal_id) ON DELETE CASCADE,
    key_id     text        NOT NULL,  -- a fingerprint of the secret, to name a key without showing it
    secret     bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    retire_at  timestamptz,           -- NULL: active until a rotation retires it
    PRIMARY KEY (portal_id, key_id)
);
