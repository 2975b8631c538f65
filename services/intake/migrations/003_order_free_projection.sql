-- A rebuild replays several topics, and across topics events arrive in no particular order: an
-- application's waitlisted event may be projected before its received event. The status is therefore
-- the furthest state any of its timeline entries reached, recomputed under a per-application lock,
-- instead of a step applied to a row that may not exist yet.

ALTER TABLE application_timeline ADD COLUMN status_rank int;  -- NULL: the event changed no status
-- Ranks as of this migration (services.intake.domain.STATUS_RANK), for entries projected before it.
UPDATE application_timeline SET status_rank = CASE status
    WHEN 'received' THEN 10 WHEN 'needs_manual_review' THEN 20 WHEN 'eligible' THEN 30 WHEN 'ineligible' THEN 30
    WHEN 'waitlisted' THEN 40 WHEN 'funds_reserved' THEN 50 WHEN 'approved' THEN 90 WHEN 'rejected' THEN 90
    WHEN 'withdrawn' THEN 95 END;

-- One round trip per projected event: the timeline entry, then the status it implies (forward only).
CREATE FUNCTION intake_project(
    p_event_id text, p_application_id text, p_event_type text, p_status text, p_rank int,
    p_occurred_at timestamptz, p_detail jsonb)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7316102, hashtext(p_application_id));
    INSERT INTO application_timeline (event_id, application_id, event_type, status, status_rank, occurred_at, detail)
    VALUES (p_event_id, p_application_id, p_event_type, coalesce(p_status, 'unchanged'), p_rank, p_occurred_at,
            p_detail)
    ON CONFLICT DO NOTHING;
    UPDATE application_status s
       SET status = t.status, status_rank = t.status_rank, updated_at = t.occurred_at
      FROM (SELECT status, status_rank, occurred_at FROM application_timeline
             WHERE application_id = p_application_id AND status_rank IS NOT NULL
             ORDER BY status_rank DESC, occurred_at DESC, event_id DESC LIMIT 1) t
     WHERE s.application_id = p_application_id
       AND (s.status_rank < t.status_rank OR (s.status_rank = t.status_rank AND s.updated_at < t.occurred_at));
END $$;
