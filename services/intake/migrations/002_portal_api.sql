-- The portal API: per-portal limits and scope, the applicant quota, Kafka-path submissions, withdrawals.

-- A portal may get its own rate limit (else the settings' default applies) and may be confined to
-- applicants whose AGS starts with one of its prefixes (NULL: any Thuringian applicant).
ALTER TABLE portals
    ADD COLUMN rate_per_second double precision CHECK (rate_per_second > 0),
    ADD COLUMN rate_burst      int              CHECK (rate_burst > 0),
    ADD COLUMN ags_prefixes    text[];

-- Fiscal years the money is needed in: the list filter and the quota count by them.
-- withdrawal_requested_at marks a withdrawal being published, so two concurrent requests emit one event.
ALTER TABLE application_status
    ADD COLUMN fiscal_years            int[] NOT NULL DEFAULT '{}',
    ADD COLUMN withdrawal_requested_at timestamptz;
CREATE INDEX application_status_applicant ON application_status (applicant_ags);
CREATE INDEX application_status_fiscal_years ON application_status USING gin (fiscal_years);

-- An HTTP submission between its quota check and the broker's acknowledgement. It counts against the
-- applicant's quota until its status row exists, or until it is older than a publish could take (a
-- crash or a 503 in between leaves a claim that simply stops counting).
CREATE TABLE pending_claims (
    application_id text        PRIMARY KEY,
    applicant_ags  text        NOT NULL,
    fiscal_years   int[]       NOT NULL,
    claimed_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pending_claims_applicant ON pending_claims (applicant_ags);

-- Submissions taken from the submissions topic: a portal's submission_id makes at most one application.
CREATE TABLE submissions (
    portal_id      text        NOT NULL,
    submission_id  text        NOT NULL,
    body_sha256    bytea       NOT NULL,
    application_id text        NOT NULL,
    event_id       text        NOT NULL,
    received_at    timestamptz NOT NULL,
    PRIMARY KEY (portal_id, submission_id)
);

-- The fiscal year (if any) in which the applicant already has `cap` open applications.
-- The advisory lock serialises one applicant's submissions across every intake instance until the
-- caller's transaction ends, so two concurrent submissions cannot both take the last free place.
CREATE FUNCTION intake_full_year(p_ags text, p_years int[], p_cap int, p_final_rank int, p_pending interval)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    full_year int;
BEGIN
    PERFORM pg_advisory_xact_lock(7316101, hashtext(p_ags));
    SELECT y INTO full_year FROM (
        SELECT unnest(s.fiscal_years) AS y FROM application_status s
         WHERE s.applicant_ags = p_ags AND s.status_rank < p_final_rank AND s.fiscal_years && p_years
        UNION ALL
        SELECT unnest(c.fiscal_years) FROM pending_claims c
         WHERE c.applicant_ags = p_ags AND c.fiscal_years && p_years AND c.claimed_at > now() - p_pending
           AND NOT EXISTS (SELECT 1 FROM application_status s WHERE s.application_id = c.application_id)
    ) open_years
    WHERE y = ANY (p_years) GROUP BY y HAVING count(*) >= p_cap ORDER BY y LIMIT 1;
    RETURN full_year;
END $$;

-- One round trip before an HTTP submission is published: claim the Idempotency-Key (or find who holds
-- it), check the applicant's quota, and record the pending claim. Outcomes: 'claimed', 'existing'
-- (the key's first request; compare its body hash), 'cap_exceeded' (nothing is kept).
CREATE FUNCTION intake_claim(
    p_portal text, p_key text, p_body bytea, p_application_id text, p_event_id text, p_received_at timestamptz,
    p_ags text, p_years int[], p_cap int, p_final_rank int, p_pending interval)
RETURNS TABLE (outcome text, application_id text, event_id text, received_at timestamptz, body_sha256 bytea,
               response jsonb, full_year int)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    k idempotency_keys%ROWTYPE;
    y int;
BEGIN
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
    INSERT INTO pending_claims (application_id, applicant_ags, fiscal_years) VALUES (p_application_id, p_ags, p_years);
    RETURN QUERY SELECT 'claimed', p_application_id, p_event_id, p_received_at, p_body, NULL::jsonb, NULL::int;
END $$;
