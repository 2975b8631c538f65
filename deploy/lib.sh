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

# --- supervision: is a recorded process still the one we started, and is it alive? ----------------------
# A pid counts only while it exists, is not a zombie (killed, not yet reaped by whoever inherited it: kill -0
# still succeeds on one) and, when the pid file recorded it, has the same start time (pids are reused).

proc_stat() {  # PID: the fields of /proc/PID/stat after the command name (which may hold spaces and parens)
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  echo "${stat##*) }"
}
proc_field() {  # PID N: field N of /proc/PID/stat (3 = state, 5 = process group, 22 = start time)
  local fields words
  fields="$(proc_stat "$1")" || return 1
  read -ra words <<<"$fields"
  echo "${words[$(($2 - 3))]:-}"
}
pid_running() {  # PID: exists and is not a zombie
  local state
  state="$(proc_field "$1" 3)" || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
pid_of() { local pid _; read -r pid _ <"$1" 2>/dev/null && echo "$pid"; }
# pid_alive PIDFILE: the process the file names runs (not a zombie, not a stranger with a reused pid).
pid_alive() {
  local pid started
  [ -f "$1" ] || return 1
  read -r pid started <"$1" 2>/dev/null || return 1
  [ -n "$pid" ] && pid_running "$pid" || return 1
  [ -z "${started:-}" ] || [ "$(proc_field "$pid" 22)" = "$started" ]
}
record_pid() { echo "$2 $(proc_field "$2" 22)" >"$1"; }  # PIDFILE PID

# signal_process SIGNAL PID: to its whole process group when it leads one (started by start_detached).
signal_process() {
  if [ "$(proc_field "$2" 5)" = "$2" ]; then kill -"$1" -- "-$2" 2>/dev/null || true; else kill -"$1" "$2" 2>/dev/null || true; fi
}

# stop_pidfile NAME PIDFILE: SIGTERM, wait, then SIGKILL; leaves no process behind.
stop_pidfile() {
  local name="$1" pidfile="$2" pid
  if ! pid_alive "$pidfile"; then rm -f "$pidfile"; return 0; fi
  pid="$(pid_of "$pidfile")"
  signal_process TERM "$pid"
  signal_process CONT "$pid"  # a stopped (SIGSTOP) process handles its SIGTERM only once it runs again
  for _ in $(seq 1 60); do pid_running "$pid" || break; sleep 0.5; done
  if pid_running "$pid"; then log "$name did not stop in 30s, killing"; signal_process KILL "$pid"; fi
  rm -f "$pidfile"
  log "$name stopped"
}

# start_detached PIDFILE LOGFILE COMMAND...: COMMAND in a session and process group of its own (setsid: no
# controlling terminal, no signals meant for the calling shell's job), stdin from /dev/null, output appended
# to LOGFILE; its pid and start time go to PIDFILE. Without job control (set +m) the background job is no
# group leader, so setsid execs in place and the recorded pid is the program's own.
start_detached() {
  local pidfile="$1" logfile="$2"; shift 2
  (
    set +m
    setsid "$@" </dev/null >>"$logfile" 2>&1 &
    record_pid "$pidfile" "$!"
  )
}

http_healthy() { curl -sf --max-time 2 "http://127.0.0.1:$1/health" >/dev/null; }  # PORT

# wait_healthy SECONDS CHECK...: poll CHECK (a command) until it succeeds or the time is up.
wait_healthy() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.5
  done
}

# ensure_running NAME PIDFILE LOGFILE "CHECK ARGS" COMMAND...: start NAME detached unless it runs and
# passes CHECK (its health check, e.g. "http_healthy 8001"). A pid that is gone, a zombie or reused is
# started anew; a process that fails CHECK for SUPERVISE_GRACE_SECONDS (default 20: it may be starting,
# or it hangs) is stopped and started anew.
ensure_running() {
  local name="$1" pidfile="$2" logfile="$3" check
  read -ra check <<<"$4"
  shift 4
  if pid_alive "$pidfile"; then
    if wait_healthy "${SUPERVISE_GRACE_SECONDS:-20}" "${check[@]}"; then
      log "$name already running (pid $(pid_of "$pidfile"))"
      return 0
    fi
    log "$name (pid $(pid_of "$pidfile")) fails its health check: restarting it"
    stop_pidfile "$name" "$pidfile"
  elif [ -f "$pidfile" ]; then
    log "$name is down (pid $(pid_of "$pidfile") is gone or a zombie): starting it"
    rm -f "$pidfile"
  fi
  start_detached "$pidfile" "$logfile" "$@"
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
