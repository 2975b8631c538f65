-- Run once by the postgres image on an empty data volume (/docker-entrypoint-initdb.d/), as the
-- POSTGRES_USER (egov): one database per service, owned by that user, as deploy/postgres.sh does locally.
CREATE DATABASE egov_intake;
CREATE DATABASE egov_review;
CREATE DATABASE egov_budget;
CREATE DATABASE egov_notify;
