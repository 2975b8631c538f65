#!/usr/bin/env bash
# Runs the test suite against real infrastructure: PostgreSQL (the project cluster,
# fresh test databases) and a private, freshly formatted Kafka broker on
# 127.0.0.1:29092, so tests never see a developer's data and start from empty topics.
#   deploy/test.sh [bench] [pytest args...]
# EGOV_TEST_SLOT=N (0-9) moves ports, broker and databases aside, so several
# suites can run on one machine at once.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export EGOV_TEST_SLOT="${EGOV_TEST_SLOT:-0}"
KAFKA_TEST_PORT=$((29092 + 10 * EGOV_TEST_SLOT))
TEST_STATE="$STATE_DIR/test$EGOV_TEST_SLOT"
export EGOV_TEST_KAFKA="127.0.0.1:$KAFKA_TEST_PORT"
export EGOV_SECRETS_DIR="$SECRETS_DIR"
# The admin login (CREATEDB, CREATEROLE, not superuser): makes the slot's databases and per-service roles.
export EGOV_TEST_PG_DSN="$(pg_local_dsn egov_admin postgres)"

kafka() { EGOV_STATE_DIR="$TEST_STATE" EGOV_KAFKA_PORT="$KAFKA_TEST_PORT" "$DEPLOY_DIR/kafka.sh" "$@"; }

"$DEPLOY_DIR/bootstrap.sh"
"$DEPLOY_DIR/postgres.sh" start
kafka reset >/dev/null 2>&1 || true
kafka start
trap 'kafka stop' EXIT

cd "$REPO_DIR"
if [ "${1:-}" = "bench" ]; then
  shift
  [ $# -gt 0 ] || set -- tests/perf
  .venv/bin/pytest -o python_files="bench_*.py" -p no:cacheprovider -s -q "$@"
else
  .venv/bin/pytest -p no:cacheprovider "$@"
fi
