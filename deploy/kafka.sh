#!/usr/bin/env bash
# Local single-node Kafka (KRaft) on 127.0.0.1:$EGOV_KAFKA_PORT (default 19092).
#   deploy/kafka.sh start|stop|status|wait|restart|fetch
# The broker's jars come from Maven Central (deploy/kafka/pom.xml) and are
# cached in $CACHE_DIR; data and logs live in $STATE_DIR/kafka.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_PORT="${EGOV_KAFKA_PORT:-19092}"
CONTROLLER_PORT="${EGOV_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_DIR="$STATE_DIR/kafka"
PIDFILE="$KAFKA_DIR/kafka.pid"
LIBS="$CACHE_DIR/kafka-libs-$(sha256sum "$DEPLOY_DIR/kafka/pom.xml" | cut -c1-12)"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"

fetch() {
  [ -f "$LIBS/.complete" ] && return 0
  command -v mvn >/dev/null || apt_install maven
  log "fetching the Kafka broker from Maven Central"
  rm -rf "$LIBS"
  mvn -q -B -f "$DEPLOY_DIR/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$LIBS" -DincludeScope=runtime
  touch "$LIBS/.complete"
}

run_java() { "$JAVA" -cp "$LIBS/*" "$@"; }

format_storage() {
  [ -f "$KAFKA_DIR/data/meta.properties" ] && return 0
  mkdir -p "$KAFKA_DIR/data"
  local cluster_id
  cluster_id="$(run_java -Dlog4j2.level=warn kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
  sed -e "s#@KAFKA_PORT@#$KAFKA_PORT#g" -e "s#@CONTROLLER_PORT@#$CONTROLLER_PORT#g" -e "s#@DATA_DIR@#$KAFKA_DIR/data#g" \
    "$DEPLOY_DIR/kafka/server.properties" >"$KAFKA_DIR/server.properties"
  run_java -Dlog4j2.configurationFile="$DEPLOY_DIR/kafka/log4j2.properties" -Dkafka.logs.dir="$KAFKA_DIR/logs" \
    kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_DIR/server.properties" >/dev/null
}

# The port opens before the broker has joined its own quorum; the log line is the real signal.
ready() { port_open "$KAFKA_PORT" && grep -q "Kafka Server started" "$KAFKA_DIR/logs/server.log" 2>/dev/null; }

start() {
  if pid_alive "$PIDFILE"; then log "kafka already running (pid $(cat "$PIDFILE"))"; return 0; fi
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process"
  fetch
  format_storage
  mkdir -p "$KAFKA_DIR/logs"
  [ -f "$KAFKA_DIR/logs/server.log" ] && mv "$KAFKA_DIR/logs/server.log" "$KAFKA_DIR/logs/server.log.previous"
  log "starting kafka on 127.0.0.1:$KAFKA_PORT"
  nohup "$JAVA" -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$DEPLOY_DIR/kafka/log4j2.properties" -Dkafka.logs.dir="$KAFKA_DIR/logs" \
    -cp "$LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
    >"$KAFKA_DIR/logs/stdout.log" 2>&1 &
  echo $! >"$PIDFILE"
  wait_ready
}

wait_ready() {
  wait_for "kafka" 90 ready
  log "kafka ready"
}

status() {
  if pid_alive "$PIDFILE" && ready; then echo "kafka: running (pid $(cat "$PIDFILE")) on 127.0.0.1:$KAFKA_PORT"
  else echo "kafka: stopped"; return 1; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop_pidfile kafka "$PIDFILE" ;;
  restart) stop_pidfile kafka "$PIDFILE"; start ;;
  status) status ;;
  wait) wait_ready ;;
  fetch) fetch ;;
  reset) stop_pidfile kafka "$PIDFILE"; rm -rf "$KAFKA_DIR" ;;
  *) echo "usage: $0 start|stop|restart|status|wait|fetch|reset" >&2; exit 2 ;;
esac
