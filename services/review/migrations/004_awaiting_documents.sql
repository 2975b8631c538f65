-- Review reviews complete applications only. An application that announces attachments waits here,
-- as received, until intake's application.completed says the last of them arrived; the review then
-- runs with that time as the application's place. One that announces none is complete at receipt and
-- never waits.
CREATE TABLE awaiting_documents (
    application_id text        PRIMARY KEY,
    received_event jsonb       NOT NULL,
    received_at    timestamptz NOT NULL
);
