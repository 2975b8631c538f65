-- A keyed HTTP submission whose publish was not acknowledged in time: the outcome is unknown (the
-- broker may still write it). The exact event it tried to publish is kept, so a retry with the same
-- Idempotency-Key either finds it landed (intake's status view consumed it) or publishes the very
-- same bytes again, never a second application and never one event id for two contents.
ALTER TABLE idempotency_keys ADD COLUMN unacknowledged_event bytea;
