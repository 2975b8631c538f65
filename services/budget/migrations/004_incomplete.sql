-- An application that announces attachments is not complete at receipt: it stands in line as
-- 'incomplete' (no place decided, no money held) until application.completed (or the review that
-- follows it) gives it its place, the time its last attachment arrived; it then waits like any other.
ALTER TABLE line DROP CONSTRAINT line_status_check;
ALTER TABLE line ADD CONSTRAINT line_status_check
    CHECK (status IN ('incomplete', 'waiting', 'earmarked', 'reserved', 'approved', 'withdrawn', 'rejected'));
