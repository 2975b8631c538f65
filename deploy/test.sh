#!/usr/bin/env bash
# Runs the test suite against real infrastructure: PostgreSQL (the project cluster,
# fresh test databases) and a private, freshly formatted Kafka broker per slot
# (127.0.0.1:29092 for slot 0), so tests never see a developer's data and start from empty topics.
#   deploy/test.sh                   the whole suite, as two shards side by side (slots N and N+1)
#   deploy/test.sh [pytest args...]  what the arguments select, in one session (slot N)
#   deploy/test.sh bench [args...]   the benchmarks under tests/perf
# EGOV_TEST_SLOT=N (0-9) moves ports, broker and databases aside, so several
# suites can run on one machine at once. EGOV_TEST_SHARDS=1 runs the whole suite in one session.
#
# Why two shards: most of the suite's time is spent waiting (for a rebalance, a session timeout,
# a paused broker, a line server round), not computing, so two sessions on two cores finish in
# little more than half the time. Each shard is a whole session with its own broker, databases and
# ports, and ends with its own audit of its own log (tests/e2e/test_audit_log.py runs in both).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BASE_SLOT="${EGOV_TEST_SLOT:-0}"
export EGOV_SECRETS_DIR="$SECRETS_DIR"
# The admin login (CREATEDB, CREATEROLE, not superuser): makes the slot's databases and per-service roles.
export EGOV_TEST_PG_DSN="$(pg_local_dsn egov_admin postgres)"

kafka_port() { echo $((29092 + 10 * $1)); }
kafka() { # kafka SLOT COMMAND...
  local slot=$1
  shift
  EGOV_STATE_DIR="$STATE_DIR/test$slot" EGOV_KAFKA_PORT="$(kafka_port "$slot")" "$DEPLOY_DIR/kafka.sh" "$@"
}

# shard SLOT PYTEST_ARGS...: one pytest session against the slot's own fresh broker.
shard() {
  local slot=$1
  shift
  EGOV_TEST_SLOT="$slot" EGOV_TEST_KAFKA="127.0.0.1:$(kafka_port "$slot")" .venv/bin/pytest -p no:cacheprovider "$@"
}

# The whole suite in two parts of about equal time: the long end-to-end runs in one, the
# integration and unit tests with the fault-suite smoke and the HTTP fuzzing in the other.
SECOND_SHARD_E2E=(tests/e2e/test_fault_suite.py tests/e2e/test_http_fuzz.py tests/e2e/test_audit_log.py)
first_shard() {
  local args=(tests/e2e)
  for path in "${SECOND_SHARD_E2E[@]}"; do
    [ "$path" = tests/e2e/test_audit_log.py ] || args+=("--ignore=$path")
  done
  echo "${args[@]}"
}
second_shard() {
  local dirs=()
  for dir in tests/*/; do
    case "$dir" in tests/e2e/ | tests/perf/ | tests/faults/ | tests/__pycache__/) ;; *) dirs+=("${dir%/}") ;; esac
  done
  echo "${dirs[@]}" "${SECOND_SHARD_E2E[@]}"
}

"$DEPLOY_DIR/bootstrap.sh"
"$DEPLOY_DIR/postgres.sh" start
cd "$REPO_DIR"

if [ "${1:-}" = "bench" ]; then
  shift
  [ $# -gt 0 ] || set -- tests/perf
  kafka "$BASE_SLOT" reset >/dev/null 2>&1 || true
  kafka "$BASE_SLOT" start
  trap 'kafka "$BASE_SLOT" stop' EXIT
  EGOV_TEST_SLOT="$BASE_SLOT" EGOV_TEST_KAFKA="127.0.0.1:$(kafka_port "$BASE_SLOT")" \
    .venv/bin/pytest -o python_files="bench_*.py" -p no:cacheprovider -s -q "$@"
  exit
fi

if [ $# -gt 0 ] || [ "${EGOV_TEST_SHARDS:-2}" = 1 ]; then
  kafka "$BASE_SLOT" reset >/dev/null 2>&1 || true
  kafka "$BASE_SLOT" start
  trap 'kafka "$BASE_SLOT" stop' EXIT
  shard "$BASE_SLOT" "$@"
  exit
fi

SECOND_SLOT=$((BASE_SLOT + 1))
SECOND_LOG="$STATE_DIR/test$SECOND_SLOT/shard.log"
for slot in "$BASE_SLOT" "$SECOND_SLOT"; do
  kafka "$slot" reset >/dev/null 2>&1 || true
  kafka "$slot" start
done
trap 'kafka "$BASE_SLOT" stop; kafka "$SECOND_SLOT" stop' EXIT

# shellcheck disable=SC2046 # the shard's arguments are paths and options without spaces
shard "$SECOND_SLOT" -q $(second_shard) >"$SECOND_LOG" 2>&1 &
second=$!
log "second shard (slot $SECOND_SLOT) running, its output follows the first's ($SECOND_LOG)"
first_status=0
# shellcheck disable=SC2046
shard "$BASE_SLOT" $(first_shard) || first_status=$?
second_status=0
wait "$second" || second_status=$?
log "second shard (slot $SECOND_SLOT):"
cat "$SECOND_LOG"
log "first shard: exit $first_status; second shard: exit $second_status"
[ "$first_status" = 0 ] && [ "$second_status" = 0 ]
