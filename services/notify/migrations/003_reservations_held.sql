-- Money budget holds for an application, per fiscal year, as notify has heard it: a reservation
-- adds a row, its release or commitment removes it. A withdrawal notice says money is released
-- only while a row is here, so a waitlisted application (nothing reserved) is not told so.
CREATE TABLE reservations_held (
    application_id text NOT NULL,
    fiscal_year    int  NOT NULL,
    PRIMARY KEY (application_id, fiscal_year)
);
