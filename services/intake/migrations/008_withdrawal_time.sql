-- A withdrawal keeps the time of its first attempt. Its event id is derived from the application, so
-- a retry after an unknown outcome (503 broker.outcome_unknown) publishes the same event again; with
-- a fresh time it would be another event under the same id on the log (found by make faults CLUSTER=3).
ALTER TABLE application_status ADD COLUMN withdrawal_first_requested_at timestamptz;
