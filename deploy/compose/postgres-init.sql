-- Run once by the postgres image on an empty data volume (/docker-entrypoint-initdb.d/), as the
-- POSTGRES_USER (egov, the cluster's superuser here): per service the roles deploy/postgres.sh makes
-- locally (README "PostgreSQL roles"):
--   egov_<service>_owner  owns the database and its schema; the service migrates with it at start-up
--                         and grants the runtime login its rights (runtime/db.py grant_runtime).
--   egov_<service>        the runtime login: DML on its tables, SELECT/INSERT only on budget's ledger.
-- Neither may create roles or databases; only the login (and the owner) may connect to the database.
-- PLACEHOLDER passwords, development only: the services refuse "dev-only" in production.

CREATE ROLE egov_intake_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'egov_intake_owner-dev-only';
CREATE ROLE egov_intake LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'egov_intake-dev-only';
CREATE DATABASE egov_intake OWNER egov_intake_owner;
REVOKE ALL ON DATABASE egov_intake FROM PUBLIC;
GRANT CONNECT ON DATABASE egov_intake TO egov_intake;

CREATE ROLE egov_review_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'egov_review_owner-dev-only';
CREATE ROLE egov_review LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'egov_review-dev-only';
CREATE DATABASE egov_review OWNER egov_review_owner;
REVOKE ALL ON DATABASE egov_review FROM PUBLIC;
GRANT CONNECT ON DATABASE egov_review TO egov_review;

CREATE ROLE egov_budget_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'egov_budget_owner-dev-only';
CREATE ROLE egov_budget LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'egov_budget-dev-only';
CREATE DATABASE egov_budget OWNER egov_budget_owner;
REVOKE ALL ON DATABASE egov_budget FROM PUBLIC;
GRANT CONNECT ON DATABASE egov_budget TO egov_budget;

CREATE ROLE egov_notify_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'egov_notify_owner-dev-only';
CREATE ROLE egov_notify LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'egov_notify-dev-only';
CREATE DATABASE egov_notify OWNER egov_notify_owner;
REVOKE ALL ON DATABASE egov_notify FROM PUBLIC;
GRANT CONNECT ON DATABASE egov_notify TO egov_notify;
