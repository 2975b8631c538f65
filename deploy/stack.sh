#!/usr/bin/env bash
# The whole system on this machine: PostgreSQL, Kafka, the SMTP sink, the four
# services, the statistics app and Prometheus, all on loopback.
#   deploy/stack.sh start|stop|status|demo
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUN_DIR="$STATE_DIR/run"
LOG_DIR="$STATE_DIR/logs"
SERVICES=(intake review budget notify)
declare -A PORTS=([intake]=8001 [review]=8002 [budget]=8003 [notify]=8004)
KAFKA_BOOTSTRAP="127.0.0.1:${EGOV_KAFKA_PORT:-19092}"
PROM_PORT=9090
# The statistics app (faust, downstream of the decisions): its own Kafka principal, no database.
STATISTICS_PORT=8005
SMTP_PORT=8025
mkdir -p "$RUN_DIR" "$LOG_DIR"

# export_kafka PREFIX PRINCIPAL: this shell's children connect to the local broker as PRINCIPAL. The password
# reaches them through the environment, never through a command line that ps would show.
export_kafka() {
  local kv
  while read -r kv; do export "${kv?}"; done < <(kafka_client_env "$1" "$2" "$KAFKA_BOOTSTRAP")
}

# health_of NAME: the command that tells whether NAME is alive (not merely whether its pid exists).
health_of() {
  case "$1" in
    smtp-sink) echo "port_open $SMTP_PORT" ;;
    prometheus) echo "curl -sf --max-time 2 http://127.0.0.1:$PROM_PORT/-/healthy" ;;
    statistics) echo "http_healthy $STATISTICS_PORT" ;;
    *) echo "http_healthy ${PORTS[$1]}" ;;
  esac
}

# start_process NAME COMMAND...: start NAME detached in its own session, unless it runs and is healthy;
# one that is down (gone, a zombie) or fails its health check is (re)started (lib.sh ensure_running).
# With KAFKA_AS=PREFIX:PRINCIPAL it connects to Kafka as PRINCIPAL.
start_process() {
  local name="$1"; shift
  (
    # cd first, so the background job is the program itself and its pid is the one recorded.
    cd "$REPO_DIR" || exit 1
    [ -z "${KAFKA_AS:-}" ] || export_kafka "${KAFKA_AS%%:*}" "${KAFKA_AS#*:}"
    ensure_running "$name" "$RUN_DIR/$name.pid" "$LOG_DIR/$name.log" "$(health_of "$name")" "$@"
  )
}

service_ready() { curl -sf "http://127.0.0.1:${PORTS[$1]}/ready" >/dev/null; }

start() {
  "$DEPLOY_DIR/bootstrap.sh"
  "$DEPLOY_DIR/postgres.sh" start
  "$DEPLOY_DIR/kafka.sh" start
  (export_kafka EGOV admin && "$PY" -m runtime.topics)
  start_process smtp-sink "$PY" -m services.notify.smtp_sink --port "$SMTP_PORT" --dir "$STATE_DIR/mail"
  # The local stack's portal receivers run on this machine: let notify call loopback (never in production).
  export NOTIFY_ALLOW_LOOPBACK_CALLBACKS="${NOTIFY_ALLOW_LOOPBACK_CALLBACKS:-true}"
  for s in "${SERVICES[@]}"; do
    # Each service runs as its own login and migrates as its database's owner (deploy/postgres.sh).
    local prefix="${s^^}_"
    # env execs the program, so the recorded pid stays the service's.
    KAFKA_AS="${s^^}:$s" start_process "$s" env "${prefix}DATABASE_URL=$(pg_local_dsn "egov_$s" "egov_$s")" \
      "${prefix}DATABASE_OWNER_URL=$(pg_local_dsn "egov_${s}_owner" "egov_$s")" "$PY" -m "services.$s"
  done
  for s in "${SERVICES[@]}"; do wait_for "$s" 60 service_ready "$s"; log "$s ready on 127.0.0.1:${PORTS[$s]}"; done
  KAFKA_AS="STATISTICS:statistics" start_process statistics "$PY" -m services.statistics
  wait_for statistics 90 curl -sf "http://127.0.0.1:$STATISTICS_PORT/ready"
  log "statistics ready on 127.0.0.1:$STATISTICS_PORT"
  start_process prometheus prometheus --config.file="$DEPLOY_DIR/prometheus/prometheus.yml" \
    --storage.tsdb.path="$STATE_DIR/prometheus" --web.listen-address="127.0.0.1:$PROM_PORT"
  wait_for prometheus 30 curl -sf "http://127.0.0.1:$PROM_PORT/-/ready"
  cat <<INFO

The system is up (all on 127.0.0.1):
  intake API      http://127.0.0.1:8001/docs     (OpenAPI: /openapi.json)
  review          http://127.0.0.1:8002/ready
  budget admin    http://127.0.0.1:8003/docs
  notify          http://127.0.0.1:8004/ready
  statistics      http://127.0.0.1:$STATISTICS_PORT/docs   (open data: /v1/open-data/totals.csv)
  metrics         http://127.0.0.1:800{1..5}/metrics
  Prometheus      http://127.0.0.1:$PROM_PORT   (targets: /targets, alerts: /alerts)
  mails (sink)    $STATE_DIR/mail/*.eml
  logs            $LOG_DIR/*.log
Stop everything with: make stop
INFO
}

stop() {
  stop_pidfile prometheus "$RUN_DIR/prometheus.pid"
  stop_pidfile statistics "$RUN_DIR/statistics.pid"
  for s in "${SERVICES[@]}"; do stop_pidfile "$s" "$RUN_DIR/$s.pid"; done
  stop_pidfile smtp-sink "$RUN_DIR/smtp-sink.pid"
  "$DEPLOY_DIR/kafka.sh" stop
  "$DEPLOY_DIR/postgres.sh" stop
}

status() {
  "$DEPLOY_DIR/postgres.sh" status || true
  "$DEPLOY_DIR/kafka.sh" status || true
  local check
  for name in smtp-sink "${SERVICES[@]}" statistics prometheus; do
    read -ra check <<<"$(health_of "$name")"
    if ! pid_alive "$RUN_DIR/$name.pid"; then echo "$name: stopped"
    elif "${check[@]}" >/dev/null 2>&1; then echo "$name: running (pid $(pid_of "$RUN_DIR/$name.pid"))"
    else echo "$name: not healthy (pid $(pid_of "$RUN_DIR/$name.pid")); deploy/stack.sh start restarts it"; fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  demo) "$PY" "$DEPLOY_DIR/demo/demo.py" ;;
  *) echo "usage: $0 start|stop|status|demo" >&2; exit 2 ;;
esac
