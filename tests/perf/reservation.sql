-- pgbench script: what the budget service does for one eligible application, as one transaction.
\set n random(1, 2000000000)
BEGIN;
SELECT pg_advisory_xact_lock(7316010);
INSERT INTO processed_events (consumer, event_id) VALUES ('bench', 'e-' || :n || '-' || :client_id);
INSERT INTO line (application_id, place_at, ready_at, received_at, category, funding, rules_version, cause_event_id)
  VALUES ('A-' || :n || '-' || :client_id, now(), now(), now(), 'dms_eservices', '{"2040": 100}', 'v', 'e');
UPDATE pots SET available_cents = available_cents - 100, reserved_cents = reserved_cents + 100 WHERE fiscal_year = 2040;
INSERT INTO reservations (application_id, fiscal_year, amount_cents, status, ready_at)
  VALUES ('A-' || :n || '-' || :client_id, 2040, 100, 'reserved', now());
INSERT INTO ledger (fiscal_year, application_id, movement, amount_cents, actor) VALUES (2040, 'A', 'reserved', 100, 'b');
UPDATE pots SET reserved_cents = reserved_cents - 100, committed_cents = committed_cents + 100 WHERE fiscal_year = 2040;
UPDATE reservations SET status = 'committed' WHERE application_id = 'A-' || :n || '-' || :client_id;
INSERT INTO ledger (fiscal_year, application_id, movement, amount_cents, actor) VALUES (2040, 'A', 'committed', 100, 'b');
UPDATE line SET status = 'approved' WHERE application_id = 'A-' || :n || '-' || :client_id;
INSERT INTO decisions (application_id, decision) VALUES ('A-' || :n || '-' || :client_id, 'approved');
INSERT INTO outbox (topic, key, event_type, event_id, value) VALUES ('t', 'k', 'reserved', 'i', '\x00');
INSERT INTO outbox (topic, key, event_type, event_id, value) VALUES ('t', 'k', 'committed', 'i', '\x00');
INSERT INTO outbox (topic, key, event_type, event_id, value) VALUES ('t', 'k', 'decided', 'i', '\x00');
COMMIT;
