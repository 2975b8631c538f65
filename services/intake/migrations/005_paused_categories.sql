-- Categories a budget administrator paused (budget.category_paused on egov.budget-admin.v1) and
-- has not resumed since. Written by intake's consumer of that topic in its inbox transaction;
-- read when a receipt is made, so category_open tells the pauses published up to the receipt.
-- The rules file's own pauses still count: a category is open only if neither says paused.
CREATE TABLE paused_categories (
    category  text        PRIMARY KEY,
    paused_at timestamptz NOT NULL,
    event_id  text        NOT NULL
);
