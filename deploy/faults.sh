#!/usr/bin/env bash
# The fault suite (not part of make test): the four services as processes against a private broker and
# databases of a slot of its own, a seeded stream of applications, withdrawals, SIGKILLs, SIGSTOPs and
# poison, then the checks over the log and the databases (tests/faults/driver.py).
#   deploy/faults.sh [--seed N] [--runs N] [--applications N] [--faults N] [--slot N] [--cluster 1|3]
# --cluster 3: a three-node KRaft cluster (deploy/kafka.sh, EGOV_KAFKA_NODES=3) on the slot's ports
# 29600 + 10 * slot to + 5, instead of the single broker on the first two of them.
# Loopback only; it never stops the shared PostgreSQL cluster (postgres.sh start is a no-op when it runs).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export EGOV_TEST_SLOT="${EGOV_TEST_SLOT:-9}"
export EGOV_SECRETS_DIR="$SECRETS_DIR"
export EGOV_TEST_PG_DSN="$(pg_local_dsn egov_admin postgres)"

# Two runs on one slot would reset each other's broker mid-run (seen as a node failing to format): the
# second one stops here. The lock is held until the driver and every process it started have exited.
mkdir -p "$STATE_DIR"
exec 8>"$STATE_DIR/faults$EGOV_TEST_SLOT.lock"
flock -n 8 || die "another fault run (or a process it left) holds slot $EGOV_TEST_SLOT"

"$DEPLOY_DIR/bootstrap.sh"
"$DEPLOY_DIR/postgres.sh" start
cd "$REPO_DIR"
exec "$PY" -m tests.faults.driver --slot "$EGOV_TEST_SLOT" "$@"
