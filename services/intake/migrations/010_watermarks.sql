-- Intake's watermark (services/intake/watermarks.py): what it has not yet appended to the applications
-- topic, read from this database, which every intake instance shares.

-- A pending claim keeps its receipt time: until the claim is recorded as acknowledged, its event may
-- still be on its way, and no watermark may pass it.
ALTER TABLE pending_claims ADD COLUMN received_at timestamptz;
CREATE INDEX pending_claims_received_at ON pending_claims (received_at);
-- Withdrawals being published (withdrawal_requested_at set): their time holds the watermark back too.
CREATE INDEX application_status_withdrawing ON application_status (withdrawal_requested_at)
    WHERE withdrawal_requested_at IS NOT NULL;

-- The claim, now behind the watermark's gate. p_not_before is the database's clock, read after the
-- statement took the watermark lock shared, less the claim bound: a receipt time older than that was
-- stamped in memory before a watermark that may already have passed it, so the claim moves it up to
-- p_not_before (the moment intake could take the submission, less the bound). A burst or a slow
-- database thus moves a queued submission's place by its wait beyond the bound, in arrival order
-- (claims run in the order they queued), instead of failing it; the receipt says the time kept.
DROP FUNCTION intake_claim(text, text, bytea, text, text, timestamptz, text, int[], int, int, interval);
CREATE FUNCTION intake_claim(
    p_portal text, p_key text, p_body bytea, p_application_id text, p_event_id text, p_received_at timestamptz,
    p_ags text, p_years int[], p_cap int, p_final_rank int, p_pending interval, p_not_before timestamptz)
RETURNS TABLE (outcome text, application_id text, event_id text, received_at timestamptz, body_sha256 bytea,
               response jsonb, full_year int)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    k idempotency_keys%ROWTYPE;
    y int;
BEGIN
    IF p_key IS NOT NULL THEN
        SELECT * INTO k FROM idempotency_keys WHERE portal_id = p_portal AND idempotency_key = p_key;
        IF FOUND THEN
            RETURN QUERY SELECT 'existing', k.application_id, k.event_id, k.received_at, k.body_sha256, k.response,
                                NULL::int;
            RETURN;
        END IF;
    END IF;
    p_received_at := greatest(p_received_at, p_not_before);
    IF p_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (portal_id, idempotency_key, body_sha256, application_id, event_id, received_at)
        VALUES (p_portal, p_key, p_body, p_application_id, p_event_id, p_received_at)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            SELECT * INTO k FROM idempotency_keys WHERE portal_id = p_portal AND idempotency_key = p_key;
            RETURN QUERY SELECT 'existing', k.application_id, k.event_id, k.received_at, k.body_sha256, k.response,
                                NULL::int;
            RETURN;
        END IF;
    END IF;
    y := intake_full_year(p_ags, p_years, p_cap, p_final_rank, p_pending);
    IF y IS NOT NULL THEN
        -- Refused requests keep no key: the portal may retry once an application is decided or withdrawn.
        DELETE FROM idempotency_keys WHERE portal_id = p_portal AND idempotency_key = p_key;
        RETURN QUERY SELECT 'cap_exceeded', NULL::text, NULL::text, NULL::timestamptz, NULL::bytea, NULL::jsonb, y;
        RETURN;
    END IF;
    INSERT INTO pending_claims (application_id, applicant_ags, fiscal_years, received_at)
    VALUES (p_application_id, p_ags, p_years, p_received_at);
    RETURN QUERY SELECT 'claimed', p_application_id, p_event_id, p_received_at, p_body, NULL::jsonb, NULL::int;
END $$;

-- A keyed submission whose first event can no longer land (the broker refuses it as too old) and did
-- not: it gets a new receipt time and a new event id under the same key and application id, claimed
-- behind the same gate (a time older than the gate allows is moved up, as in the claim). No row if the
-- key was answered meanwhile.
CREATE FUNCTION intake_restamp(
    p_portal text, p_key text, p_event_id text, p_received_at timestamptz, p_not_before timestamptz)
RETURNS TABLE (application_id text, event_id text, received_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    k idempotency_keys%ROWTYPE;
BEGIN
    p_received_at := greatest(p_received_at, p_not_before);
    UPDATE idempotency_keys SET event_id = p_event_id, received_at = p_received_at, unacknowledged_event = NULL
     WHERE portal_id = p_portal AND idempotency_key = p_key AND response IS NULL
    RETURNING * INTO k;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE pending_claims SET received_at = p_received_at, claimed_at = now()
     WHERE pending_claims.application_id = k.application_id;
    RETURN QUERY SELECT k.application_id, k.event_id, k.received_at;
END $$;
