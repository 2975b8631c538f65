#!/usr/bin/env bash
# Local single-node Kafka (KRaft) on 127.0.0.1:$EGOV_KAFKA_PORT (default 19092), secured as in production:
# a SASL_SSL listener (SCRAM-SHA-512 over TLS) and the StandardAuthorizer with the registry's ACLs.
#   deploy/kafka.sh start|stop|status|wait|restart|fetch|fetch-tools|tools-classpath|reset|secrets
# The broker's jars come from Maven Central (deploy/kafka/pom.xml) and are
# cached in $CACHE_DIR; data and logs live in $STATE_DIR/kafka. The throwaway CA, the broker's
# certificate and every principal's password live in $SECRETS_DIR (see lib.sh), made at first start.
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

# The broker's perf tools (deploy/kafka/tools/pom.xml), for the pipeline benchmark's ceiling.
TOOLS="$CACHE_DIR/kafka-tools-$(sha256sum "$DEPLOY_DIR/kafka/tools/pom.xml" | cut -c1-12)"
fetch_tools() {
  [ -f "$TOOLS/.complete" ] && return 0
  command -v mvn >/dev/null || apt_install maven
  log "fetching the Kafka perf tools from Maven Central"
  rm -rf "$TOOLS"
  mvn -q -B -f "$DEPLOY_DIR/kafka/tools/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$TOOLS" -DincludeScope=runtime
  touch "$TOOLS/.complete"
}

run_java() { "$JAVA" -cp "$LIBS/*" "$@"; }

# Every SCRAM user the local broker knows: the registry's principals (services, operators, readers, the
# local portals), and the broker's own inter-broker user.
scram_users() { echo broker; "$PY" -m runtime.acls principals; }

# A throwaway CA and a broker certificate for 127.0.0.1/localhost, and a random password per principal.
# Made once per $SECRETS_DIR and shared by every local broker (run, tests, private test brokers).
secrets() {
  mkdir -p "$SECRETS_DIR" && chmod 700 "$SECRETS_DIR"
  exec 9>"$SECRETS_DIR/.lock"
  flock 9
  if [ ! -f "$TLS_DIR/broker.p12" ]; then
    log "creating a throwaway CA and the broker certificate in $TLS_DIR"
    mkdir -p "$TLS_DIR"
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    openssl req -x509 "${ec[@]}" -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.pem" -days 3650 \
      -subj "/CN=egov-intake local throwaway CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req "${ec[@]}" -keyout "$TLS_DIR/broker.key" -out "$TLS_DIR/broker.csr" -subj "/CN=egov-kafka-local" 2>/dev/null
    openssl x509 -req -in "$TLS_DIR/broker.csr" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" -CAcreateserial \
      -out "$TLS_DIR/broker.pem" -days 825 -extfile <(printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" \
      "extendedKeyUsage=serverAuth" "keyUsage=critical,digitalSignature") 2>/dev/null
    openssl rand -hex 24 >"$TLS_DIR/keystore.password"
    openssl pkcs12 -export -in "$TLS_DIR/broker.pem" -inkey "$TLS_DIR/broker.key" -certfile "$TLS_DIR/ca.pem" \
      -name broker -out "$TLS_DIR/broker.p12" -passout "file:$TLS_DIR/keystore.password"
    rm -f "$TLS_DIR/broker.csr"
  fi
  mkdir -p "$USERS_DIR"
  local user
  for user in $(scram_users) controller; do
    [ -s "$USERS_DIR/$user.password" ] || (umask 077 && openssl rand -hex 24 >"$USERS_DIR/$user.password")
  done
  chmod -R go-rwx "$SECRETS_DIR"
  flock -u 9
}

render_config() {
  sed -e "s#@KAFKA_PORT@#$KAFKA_PORT#g" -e "s#@CONTROLLER_PORT@#$CONTROLLER_PORT#g" -e "s#@DATA_DIR@#$KAFKA_DIR/data#g" \
    -e "s#@TLS_DIR@#$TLS_DIR#g" -e "s#@LISTEN_HOST@#127.0.0.1#g" -e "s#@ADVERTISED_HOST@#127.0.0.1#g" -e "s#@KEYSTORE_PASSWORD@#$(cat "$TLS_DIR/keystore.password")#g" \
    -e "s#@BROKER_PASSWORD@#$(cat "$USERS_DIR/broker.password")#g" \
    -e "s#@CONTROLLER_PASSWORD@#$(cat "$USERS_DIR/controller.password")#g" \
    "$DEPLOY_DIR/kafka/server.properties" >"$KAFKA_DIR/server.properties"
  chmod 600 "$KAFKA_DIR/server.properties"
}

# SCRAM credentials live in the metadata log; a KRaft node gets its first ones at format time.
format_storage() {
  if [ -f "$KAFKA_DIR/data/meta.properties" ]; then
    [ -f "$KAFKA_DIR/data/.secured" ] && return 0
    die "$KAFKA_DIR holds a broker formatted without SASL users: run '$0 reset' (its topics are lost)"
  fi
  mkdir -p "$KAFKA_DIR/data"
  local cluster_id user scram=()
  cluster_id="$(run_java -Dlog4j2.level=warn kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
  for user in $(scram_users); do
    scram+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(cat "$USERS_DIR/$user.password")]")
  done
  run_java -Dlog4j2.configurationFile="$DEPLOY_DIR/kafka/log4j2.properties" -Dkafka.logs.dir="$KAFKA_DIR/logs" \
    kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_DIR/server.properties" "${scram[@]}" >/dev/null
  touch "$KAFKA_DIR/data/.secured"
  scram_users >"$KAFKA_DIR/data/.scram-users"
}

# A principal added to the registry after the broker was formatted (statistics, say) gets its SCRAM user
# on the running broker, as the operator; .scram-users lists the users the broker has (none listed: unknown).
add_new_scram_users() {
  local user config="$KAFKA_DIR/admin-client.properties"
  local known="$KAFKA_DIR/data/.scram-users"
  local missing=()
  for user in $(scram_users); do grep -qx "$user" "$known" 2>/dev/null || missing+=("$user"); done
  [ ${#missing[@]} -gt 0 ] || return 0
  (umask 077 && printf '%s\n' "security.protocol=SASL_SSL" "sasl.mechanism=SCRAM-SHA-512" \
    "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$(cat "$USERS_DIR/admin.password")\";" \
    "ssl.truststore.type=PEM" "ssl.truststore.location=$TLS_DIR/ca.pem" >"$config")
  for user in "${missing[@]}"; do
    run_java -Dlog4j2.configurationFile="$DEPLOY_DIR/kafka/log4j2.properties" -Dkafka.logs.dir="$KAFKA_DIR/logs" \
      kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --command-config "$config" --alter \
      --add-config "SCRAM-SHA-512=[password=$(cat "$USERS_DIR/$user.password")]" --entity-type users \
      --entity-name "$user" >/dev/null
    echo "$user" >>"$known"
  done
  rm -f "$config"
  log "kafka SCRAM users added: ${missing[*]}"
}

# The registry's ACLs, applied as the operator principal; idempotent.
apply_acls() {
  EGOV_KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT" EGOV_KAFKA_USERNAME=admin \
    EGOV_KAFKA_PASSWORD="$(cat "$USERS_DIR/admin.password")" EGOV_KAFKA_CA_FILE="$TLS_DIR/ca.pem" \
    "$PY" -m runtime.acls apply --quiet
}

# The port opens before the broker has joined its own quorum; the log line is the real signal.
ready() { port_open "$KAFKA_PORT" && grep -q "Kafka Server started" "$KAFKA_DIR/logs/server.log" 2>/dev/null; }

start() {
  if pid_alive "$PIDFILE"; then log "kafka already running (pid $(cat "$PIDFILE"))"; return 0; fi
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process"
  fetch
  secrets
  mkdir -p "$KAFKA_DIR/logs"
  render_config
  format_storage
  [ -f "$KAFKA_DIR/logs/server.log" ] && mv "$KAFKA_DIR/logs/server.log" "$KAFKA_DIR/logs/server.log.previous"
  log "starting kafka on 127.0.0.1:$KAFKA_PORT"
  nohup "$JAVA" -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$DEPLOY_DIR/kafka/log4j2.properties" -Dkafka.logs.dir="$KAFKA_DIR/logs" \
    -cp "$LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
    >"$KAFKA_DIR/logs/stdout.log" 2>&1 &
  echo $! >"$PIDFILE"
  wait_ready
  add_new_scram_users
  apply_acls
  log "kafka ACLs applied"
}

# A broker that exited (a bad config) fails the wait at once instead of after its timeout.
ready_or_gone() {
  pid_alive "$PIDFILE" || die "kafka exited during start-up; see $KAFKA_DIR/logs/server.log"
  ready
}

wait_ready() {
  wait_for "kafka" 90 ready_or_gone
  log "kafka ready"
}

status() {
  if pid_alive "$PIDFILE" && ready; then echo "kafka: running (pid $(cat "$PIDFILE")) on 127.0.0.1:$KAFKA_PORT (SASL_SSL)"
  else echo "kafka: stopped"; return 1; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop_pidfile kafka "$PIDFILE" ;;
  restart) stop_pidfile kafka "$PIDFILE"; start ;;
  status) status ;;
  wait) wait_ready ;;
  fetch) fetch ;;
  fetch-tools) fetch_tools ;;
  tools-classpath) fetch_tools; echo "$TOOLS/*" ;;
  secrets) secrets ;;
  reset) stop_pidfile kafka "$PIDFILE"; rm -rf "$KAFKA_DIR" ;;
  *) echo "usage: $0 start|stop|restart|status|wait|fetch|fetch-tools|tools-classpath|reset|secrets" >&2; exit 2 ;;
esac
