#!/usr/bin/env bash
# Local PostgreSQL from Debian's package: a cluster named "egov" on 127.0.0.1:55432, one database
# per service owned by its owner role, and a runtime login per service that may connect to its own
# database only (README "PostgreSQL roles"). egov_admin (CREATEDB, CREATEROLE, no superuser) is what
# the test suites use to make their per-slot roles and databases.
#   deploy/postgres.sh start|stop|status|wait|recreate
# recreate drops the four stack databases (their data too) and makes them again: once, for databases
# from before the per-service roles, which start refuses to take over.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_PORT="${EGOV_PG_PORT:-55432}"
PG_CLUSTER=egov
PG_USER=egov
PG_PASSWORD="${EGOV_PG_PASSWORD:-egov-dev-only}"
ADMIN_USER=egov_admin

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

ensure_role() {  # NAME PASSWORD ATTRIBUTES...
  local name="$1" password="$2"; shift 2
  psql_admin -c "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='$name') THEN CREATE ROLE $name LOGIN PASSWORD '$password' $*; END IF; END\$\$;"
}

database_owner() { psql_admin -c "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname='$1'"; }

create_databases() {
  # The pre-role login, kept for the suites and checkouts that still use it.
  ensure_role "$PG_USER" "$PG_PASSWORD" CREATEDB
  ensure_role "$ADMIN_USER" "$(pg_dev_password "$ADMIN_USER")" CREATEDB CREATEROLE
  # So the admin may drop and replace the databases the egov login made before it existed.
  psql_admin -c "DO \$\$BEGIN IF NOT pg_has_role('$ADMIN_USER', '$PG_USER', 'MEMBER') THEN GRANT $PG_USER TO $ADMIN_USER; END IF; END\$\$;"
  for s in "${PG_SERVICES[@]}"; do
    local db="egov_$s" owner="egov_${s}_owner" runtime="egov_$s" current
    ensure_role "$owner" "$(pg_dev_password "$owner")" NOSUPERUSER NOCREATEDB NOCREATEROLE
    ensure_role "$runtime" "$(pg_dev_password "$runtime")" NOSUPERUSER NOCREATEDB NOCREATEROLE
    current="$(database_owner "$db")"
    if [ -z "$current" ]; then
      psql_admin -c "CREATE DATABASE $db OWNER $owner"
    elif [ "$current" != "$owner" ]; then
      log "warning: $db belongs to $current, not $owner (made before the per-service roles);" \
        "left alone. 'deploy/postgres.sh recreate' replaces it, deleting its data"
      continue
    fi
    # Only the service's own login may connect (the owner may anyway); PUBLIC loses CONNECT and TEMP.
    psql_admin -c "REVOKE ALL ON DATABASE $db FROM PUBLIC" -c "GRANT CONNECT ON DATABASE $db TO $runtime"
  done
}

recreate_databases() {
  for s in "${PG_SERVICES[@]}"; do psql_admin -c "DROP DATABASE IF EXISTS egov_$s WITH (FORCE)"; done
  create_databases
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
  recreate) start; recreate_databases ;;
  *) echo "usage: $0 start|stop|restart|status|wait|recreate" >&2; exit 2 ;;
esac
