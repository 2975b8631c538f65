-- The applicant's order: an application's notices on one channel go out in the order of their
-- causing events (cause_time, the event's time; sequence breaks ties in the order notify stored
-- them). The claim skips a notice while an earlier one of the same application and channel is
-- still pending (due, leased or waiting for a retry), so a receipt is never overtaken by the
-- decision, nor a promotion by the approval. A notice given up ('failed') no longer holds the rest.
ALTER TABLE notices
    ADD COLUMN cause_time timestamptz,
    ADD COLUMN sequence bigserial;
UPDATE notices SET cause_time = created_at;
ALTER TABLE notices ALTER COLUMN cause_time SET NOT NULL;
CREATE INDEX notices_pending_per_application ON notices (application_id, channel, cause_time, sequence)
    WHERE status = 'pending';
