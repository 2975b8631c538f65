#!/usr/bin/env bash
# Local PostgreSQL from Debian's package: a cluster named "egov" on 127.0.0.1:55432,
# a login role and one database per service.
#   deploy/postgres.sh start|stop|status|wait
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_PORT="${EGOV_PG_PORT:-55432}"
PG_CLUSTER=egov
PG_USER=egov
PG_PASSWORD="${EGOV_PG_PASSWORD:-egov-dev-only}"
DATABASES=(egov_intake egov_review egov_budget egov_notify)

pg_version() { ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1; }

install() {
  if [ -z "$(pg_version)" ] || ! command -v pg_createcluster >/dev/null; then
    log "installing PostgreSQL from Debian's packages"
    apt_install postgresql postgresql-contrib
  fi
}

create_cluster() {
  local v; v="$(pg_version)"
  if ! pg_lsclusters -h | awk '{print $2}' | grep -qx "$PG_CLUSTER"; then
    log "creating cluster $v/$PG_CLUSTER on port $PG_PORT"
    pg_createcluster "$v" "$PG_CLUSTER" --port "$PG_PORT" -- --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    # Loopback only; enough connections for four services, two budget instances and the tests.
    cat >>"/etc/postgresql/$v/$PG_CLUSTER/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
max_connections = 300
shared_buffers = 256MB
fsync = on
CONF
  fi
}

psql_admin() { runuser -u postgres -- psql -p "$PG_PORT" -v ON_ERROR_STOP=1 -qAt "$@"; }

create_databases() {
  psql_admin -c "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='$PG_USER') THEN CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD'; END IF; END\$\$;"
  for db in "${DATABASES[@]}"; do
    if [ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname='$db'")" ]; then
      psql_admin -c "CREATE DATABASE $db OWNER $PG_USER"
    fi
  done
}

ready() { runuser -u postgres -- pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; }

start() {
  install
  create_cluster
  local v; v="$(pg_version)"
  if ! ready; then
    log "starting postgresql $v/$PG_CLUSTER on 127.0.0.1:$PG_PORT"
    pg_ctlcluster "$v" "$PG_CLUSTER" start
  fi
  wait_for postgresql 60 ready
  create_databases
  log "postgresql ready"
}

stop() {
  local v; v="$(pg_version)"
  [ -n "$v" ] || return 0
  if ready; then pg_ctlcluster "$v" "$PG_CLUSTER" stop -m fast; log "postgresql stopped"; fi
}

status() {
  if ready; then echo "postgresql: running on 127.0.0.1:$PG_PORT"; else echo "postgresql: stopped"; return 1; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  wait) wait_for postgresql 60 ready ;;
  *) echo "usage: $0 start|stop|restart|status|wait" >&2; exit 2 ;;
esac
