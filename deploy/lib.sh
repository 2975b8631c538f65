# Shared helpers for the deploy scripts: where state lives, and how to wait.
# Sourced, not run.

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$DEPLOY_DIR/.." && pwd)"
# Runtime state (broker data, logs, pid files) stays out of git.
STATE_DIR="${EGOV_STATE_DIR:-$REPO_DIR/.state}"
# The broker classpath is cached per user, so a second clone downloads nothing.
CACHE_DIR="${EGOV_CACHE_DIR:-$HOME/.cache/egov-intake}"
# Local credentials (throwaway CA, broker certificate, Kafka passwords): one set per clone, shared by the
# run stack and every test broker, independent of EGOV_STATE_DIR.
SECRETS_DIR="${EGOV_SECRETS_DIR:-$REPO_DIR/.state/secrets}"
TLS_DIR="$SECRETS_DIR/tls"
USERS_DIR="$SECRETS_DIR/kafka"
PY="$REPO_DIR/.venv/bin/python"
mkdir -p "$STATE_DIR" "$CACHE_DIR"

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# wait_for DESCRIPTION SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local what="$1" seconds="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -ge "$deadline" ] && die "$what not ready after ${seconds}s"
    sleep 0.5
  done
}

# The local stack's PostgreSQL roles: per service a runtime login egov_<service> and the owner of its
# database egov_<service>_owner (README "PostgreSQL roles"). Dev passwords are placeholders the
# services refuse in production.
PG_SERVICES=(intake review budget notify)
pg_dev_password() { echo "$1-dev-only"; }
pg_local_dsn() {  # ROLE DATABASE
  echo "postgresql://$1:$(pg_dev_password "$1")@127.0.0.1:${EGOV_PG_PORT:-55432}/$2"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pidfile NAME PIDFILE: SIGTERM, wait, then SIGKILL; leaves no process behind.
stop_pidfile() {
  local name="$1" pidfile="$2" pid
  if ! pid_alive "$pidfile"; then rm -f "$pidfile"; return 0; fi
  pid="$(cat "$pidfile")"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then log "$name did not stop in 30s, killing"; kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$pidfile"
  log "$name stopped"
}

# kafka_client_env PREFIX PRINCIPAL BOOTSTRAP: the settings a client needs to reach the local broker as
# PRINCIPAL, as NAME=VALUE words for env(1), e.g. kafka_client_env INTAKE intake 127.0.0.1:19092.
kafka_client_env() {
  local prefix="$1" principal="$2" bootstrap="$3"
  printf '%s\n' "${prefix}_KAFKA_BOOTSTRAP=$bootstrap" "${prefix}_KAFKA_USERNAME=$principal" \
    "${prefix}_KAFKA_PASSWORD=$(cat "$USERS_DIR/$principal.password")" "${prefix}_KAFKA_CA_FILE=$TLS_DIR/ca.pem"
}

apt_install() {
  if [ ! -f "$STATE_DIR/.apt-updated" ] || [ -n "$(find "$STATE_DIR/.apt-updated" -mmin +720 2>/dev/null)" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && touch "$STATE_DIR/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
