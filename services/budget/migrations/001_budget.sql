-- Fiscal-year pots. The database, not only the code, refuses over-commitment:
-- available + reserved + committed = pot, and reserved + committed <= pot, always.
CREATE TABLE pots (
    fiscal_year     int         PRIMARY KEY,
    closed          boolean     NOT NULL DEFAULT false,
    pot_cents       bigint      NOT NULL CHECK (pot_cents >= 0),
    available_cents bigint      NOT NULL CHECK (available_cents >= 0),
    reserved_cents  bigint      NOT NULL DEFAULT 0 CHECK (reserved_cents >= 0),
    committed_cents bigint      NOT NULL DEFAULT 0 CHECK (committed_cents >= 0),
    opened_by       text        NOT NULL,
    opened_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pot_balances CHECK (available_cents + reserved_cents + committed_cents = pot_cents),
    CONSTRAINT pot_not_overcommitted CHECK (reserved_cents + committed_cents <= pot_cents)
);

CREATE TABLE reservations (
    id             bigserial   PRIMARY KEY,
    application_id text        NOT NULL,
    fiscal_year    int         NOT NULL REFERENCES pots (fiscal_year),
    amount_cents   bigint      NOT NULL CHECK (amount_cents > 0),
    status         text        NOT NULL CHECK (status IN ('reserved', 'committed', 'released')),
    ready_at       timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
-- At most one active reservation per application and year.
CREATE UNIQUE INDEX reservations_one_active ON reservations (application_id, fiscal_year)
    WHERE status IN ('reserved', 'committed');

-- Every movement of money, append-only.
CREATE TABLE ledger (
    id             bigserial   PRIMARY KEY,
    fiscal_year    int         NOT NULL,
    application_id text,
    movement       text        NOT NULL CHECK (movement IN ('opened', 'raised', 'lowered', 'reserved', 'committed', 'released')),
    amount_cents   bigint      NOT NULL,
    actor          text        NOT NULL,
    cause_event_id text,
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the budget ledger is append-only';
END $$;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();

-- The line: every eligible application, in first-come-first-served order, until it is decided.
-- waiting -> reserved (money held) -> approved (committed, grant notice issued)
-- waiting/reserved -> withdrawn | rejected (money released)
CREATE TABLE line (
    application_id text        PRIMARY KEY,
    ready_at       timestamptz NOT NULL,
    received_at    timestamptz NOT NULL,
    category       text        NOT NULL,
    funding        jsonb       NOT NULL,   -- {"2027": cents, ...}
    rules_version  text        NOT NULL,
    cause_event_id text        NOT NULL,   -- the review that put it in line
    status         text        NOT NULL DEFAULT 'waiting'
                   CHECK (status IN ('waiting', 'reserved', 'approved', 'withdrawn', 'rejected')),
    told_position  int,                    -- the last waitlist position the applicant was told
    reserved_at    timestamptz,
    joined_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX line_waiting ON line (ready_at, received_at, application_id) WHERE status = 'waiting';
CREATE INDEX line_reserved ON line (reserved_at) WHERE status = 'reserved';

-- Withdrawals that arrived before the application reached the line.
CREATE TABLE withdrawals (
    application_id text        PRIMARY KEY,
    withdrawn_at   timestamptz NOT NULL DEFAULT now()
);

-- Categories the ministry paused; seeded from the rules file, changed by administrators.
CREATE TABLE categories (
    category   text        PRIMARY KEY,
    open       boolean     NOT NULL,
    changed_by text        NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);

-- One final decision per application, whichever path produced it.
CREATE TABLE decisions (
    application_id text        PRIMARY KEY,
    decision       text        NOT NULL CHECK (decision IN ('approved', 'rejected')),
    decided_at     timestamptz NOT NULL DEFAULT now()
);
