-- The fair line: an application takes its place at receipt (its complete time, place_at), and while
-- review runs its amount is earmarked, so no later application can take the money its place earned.

-- Earmarks are money too: the database keeps the four parts equal to the pot, and never lets what is
-- held (earmarked, reserved, committed) exceed it.
ALTER TABLE pots ADD COLUMN earmarked_cents bigint NOT NULL DEFAULT 0 CHECK (earmarked_cents >= 0);
ALTER TABLE pots DROP CONSTRAINT pot_balances;
ALTER TABLE pots DROP CONSTRAINT pot_not_overcommitted;
ALTER TABLE pots ADD CONSTRAINT pot_balances
    CHECK (available_cents + earmarked_cents + reserved_cents + committed_cents = pot_cents);
ALTER TABLE pots ADD CONSTRAINT pot_not_overcommitted
    CHECK (earmarked_cents + reserved_cents + committed_cents <= pot_cents);

-- A reservation row starts as an earmark when the application is still in review.
ALTER TABLE reservations DROP CONSTRAINT reservations_status_check;
ALTER TABLE reservations ADD CONSTRAINT reservations_status_check
    CHECK (status IN ('earmarked', 'reserved', 'committed', 'released'));
DROP INDEX reservations_one_active;
CREATE UNIQUE INDEX reservations_one_active ON reservations (application_id, fiscal_year)
    WHERE status IN ('earmarked', 'reserved', 'committed');

ALTER TABLE ledger DROP CONSTRAINT ledger_movement_check;
ALTER TABLE ledger ADD CONSTRAINT ledger_movement_check
    CHECK (movement IN ('opened', 'raised', 'lowered', 'earmarked', 'reserved', 'committed', 'released'));

-- The line now holds every received application, from receipt until it is decided:
--   review 'pending' (in review or with a caseworker) or 'eligible';
--   status 'waiting' (no money yet) -> 'earmarked' (pending, money set aside) or 'reserved' (eligible)
--   -> 'approved'; or 'withdrawn' | 'rejected' (money released).
ALTER TABLE line ADD COLUMN place_at timestamptz;
UPDATE line SET place_at = received_at;
ALTER TABLE line ALTER COLUMN place_at SET NOT NULL;
ALTER TABLE line ADD COLUMN review text NOT NULL DEFAULT 'eligible' CHECK (review IN ('pending', 'eligible'));
ALTER TABLE line ALTER COLUMN ready_at DROP NOT NULL;
ALTER TABLE line ALTER COLUMN rules_version DROP NOT NULL;
ALTER TABLE line DROP CONSTRAINT line_status_check;
ALTER TABLE line ADD CONSTRAINT line_status_check
    CHECK (status IN ('waiting', 'earmarked', 'reserved', 'approved', 'withdrawn', 'rejected'));
ALTER TABLE line ADD CONSTRAINT line_earmark_only_in_review CHECK (status <> 'earmarked' OR review = 'pending');
DROP INDEX line_waiting;
CREATE INDEX line_waiting ON line (place_at, received_at, application_id) WHERE status = 'waiting';

-- How far each partition of the applications topic has been read, as a time: every application with
-- an earlier place on that partition has reached the line (see services/budget/arrivals.py). The line
-- decides a place only once every partition's frontier has passed it.
CREATE TABLE arrival_progress (
    partition  int         PRIMARY KEY,
    frontier   timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
