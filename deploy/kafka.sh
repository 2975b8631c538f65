#!/usr/bin/env bash
# Local Kafka (KRaft) on loopback, secured as in production: a SASL_SSL listener (SCRAM-SHA-512 over TLS)
# and the StandardAuthorizer with the registry's ACLs.
#   deploy/kafka.sh start|stop|status|wait|restart|fetch|fetch-tools|tools-classpath|reset|secrets|bootstrap
# One node by default, on 127.0.0.1:$EGOV_KAFKA_PORT (default 19092) with its controller on the next port.
# EGOV_KAFKA_NODES=3 makes a cluster instead: three JVMs with small heaps, each broker and controller (a
# three-voter KRaft quorum), node N on $EGOV_KAFKA_PORT + 2(N-1) and its controller one port above,
# replication factor 3 and min.insync.replicas 2 for internal topics (deploy/kafka/cluster.properties).
# "start" starts the nodes that are not running (after a kill, the one that is down) and waits for all.
# The broker's jars come from Maven Central (deploy/kafka/pom.xml) and are
# cached in $CACHE_DIR; data and logs live in $STATE_DIR/kafka (a cluster: one directory per node below it).
# The throwaway CA, the broker's certificate and every principal's password live in $SECRETS_DIR (see
# lib.sh), made at first start and shared by every node.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_PORT="${EGOV_KAFKA_PORT:-19092}"
NODES="${EGOV_KAFKA_NODES:-1}"
KAFKA_DIR="$STATE_DIR/kafka"
LIBS="$CACHE_DIR/kafka-libs-$(sha256sum "$DEPLOY_DIR/kafka/pom.xml" | cut -c1-12)"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
case "$NODES" in
  1) HEAP=(-Xms256m -Xmx768m -XX:+UseG1GC) ;;
  # Three JVMs beside the services on a small machine: small heaps, a single-threaded collector and few
  # compiler threads; the broker's own thread pools are cut down in cluster.properties.
  3) HEAP=(-Xms128m -Xmx320m -XX:+UseSerialGC -XX:CICompilerCount=2) ;;
  *) die "EGOV_KAFKA_NODES=$NODES: 1 (one broker) or 3 (a cluster)" ;;
esac

node_ids() { seq 1 "$NODES"; }
node_port() { echo $((KAFKA_PORT + 2 * ($1 - 1))); }
node_controller_port() {
  if [ "$NODES" = 1 ]; then echo "${EGOV_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"; else echo $(($(node_port "$1") + 1)); fi
}
# One node keeps the layout it always had; a cluster's node N lives in node<N>.
node_dir() { if [ "$NODES" = 1 ]; then echo "$KAFKA_DIR"; else echo "$KAFKA_DIR/node$1"; fi; }
node_pidfile() { echo "$(node_dir "$1")/kafka.pid"; }
node_name() { if [ "$NODES" = 1 ]; then echo kafka; else echo "kafka node $1"; fi; }
bootstrap() {
  local n servers=()
  for n in $(node_ids); do servers+=("127.0.0.1:$(node_port "$n")"); done
  (IFS=,; echo "${servers[*]}")
}
quorum_voters() {
  local n voters=()
  for n in $(node_ids); do voters+=("$n@127.0.0.1:$(node_controller_port "$n")"); done
  (IFS=,; echo "${voters[*]}")
}

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

# The template with node N's ports and paths; a cluster's node also gets cluster.properties, whose keys
# replace the template's (each key stays once in the file, so what the node runs with is plain to read).
render_config() {
  local n="$1" dir config
  dir="$(node_dir "$n")"
  config="$dir/server.properties"
  fill() {
    sed -e "s#@KAFKA_PORT@#$(node_port "$n")#g" -e "s#@CONTROLLER_PORT@#$(node_controller_port "$n")#g" \
      -e "s#@DATA_DIR@#$dir/data#g" -e "s#@NODE_ID@#$n#g" -e "s#@QUORUM_VOTERS@#$(quorum_voters)#g" \
      -e "s#@TLS_DIR@#$TLS_DIR#g" -e "s#@LISTEN_HOST@#127.0.0.1#g" -e "s#@ADVERTISED_HOST@#127.0.0.1#g" \
      -e "s#@KEYSTORE_PASSWORD@#$(cat "$TLS_DIR/keystore.password")#g" \
      -e "s#@BROKER_PASSWORD@#$(cat "$USERS_DIR/broker.password")#g" \
      -e "s#@CONTROLLER_PASSWORD@#$(cat "$USERS_DIR/controller.password")#g" "$1"
  }
  (
    umask 077
    if [ "$NODES" = 1 ]; then
      fill "$DEPLOY_DIR/kafka/server.properties" >"$config"
    else
      local overrides
      overrides="$(fill "$DEPLOY_DIR/kafka/cluster.properties")"
      fill "$DEPLOY_DIR/kafka/server.properties" | awk -F= 'NR == FNR { if ($0 !~ /^#/ && NF) drop[$1]; next }
        !($1 in drop)' <(echo "$overrides") - >"$config"
      echo "$overrides" >>"$config"
    fi
  )
  chmod 600 "$config"
}

# All nodes of a cluster share one cluster id, drawn at the first format.
cluster_id() {
  [ -s "$KAFKA_DIR/cluster.id" ] || run_java -Dlog4j2.level=warn kafka.tools.StorageTool random-uuid 2>/dev/null |
    tail -1 >"$KAFKA_DIR/cluster.id"
  cat "$KAFKA_DIR/cluster.id"
}

# SCRAM credentials live in the metadata log; a KRaft node gets its first ones at format time.
format_storage() {
  local n="$1" dir
  dir="$(node_dir "$n")"
  if [ -f "$dir/data/meta.properties" ]; then
    [ -f "$dir/data/.secured" ] && return 0
    die "$dir holds a broker formatted without SASL users: run '$0 reset' (its topics are lost)"
  fi
  mkdir -p "$dir/data"
  local id user scram=()
  id="$(cluster_id)"
  for user in $(scram_users); do
    scram+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(cat "$USERS_DIR/$user.password")]")
  done
  run_java -Dlog4j2.configurationFile="$DEPLOY_DIR/kafka/log4j2.properties" -Dkafka.logs.dir="$dir/logs" \
    kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" "${scram[@]}" >/dev/null
  touch "$dir/data/.secured"
  if [ "$n" = 1 ]; then scram_users >"$dir/data/.scram-users"; fi
}

# A principal added to the registry after the broker was formatted (statistics, say) gets its SCRAM user
# on the running broker, as the operator; .scram-users lists the users the broker has (none listed: unknown).
add_new_scram_users() {
  local user config="$KAFKA_DIR/admin-client.properties"
  local known
  known="$(node_dir 1)/data/.scram-users"
  local missing=()
  for user in $(scram_users); do grep -qx "$user" "$known" 2>/dev/null || missing+=("$user"); done
  [ ${#missing[@]} -gt 0 ] || return 0
  (umask 077 && printf '%s\n' "security.protocol=SASL_SSL" "sasl.mechanism=SCRAM-SHA-512" \
    "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$(cat "$USERS_DIR/admin.password")\";" \
    "ssl.truststore.type=PEM" "ssl.truststore.location=$TLS_DIR/ca.pem" >"$config")
  for user in "${missing[@]}"; do
    run_java -Dlog4j2.configurationFile="$DEPLOY_DIR/kafka/log4j2.properties" -Dkafka.logs.dir="$KAFKA_DIR/logs" \
      kafka.admin.ConfigCommand --bootstrap-server "$(bootstrap)" --command-config "$config" --alter \
      --add-config "SCRAM-SHA-512=[password=$(cat "$USERS_DIR/$user.password")]" --entity-type users \
      --entity-name "$user" >/dev/null
    echo "$user" >>"$known"
  done
  rm -f "$config"
  log "kafka SCRAM users added: ${missing[*]}"
}

# The registry's ACLs, applied as the operator principal; idempotent.
apply_acls() {
  EGOV_KAFKA_BOOTSTRAP="$(bootstrap)" EGOV_KAFKA_USERNAME=admin \
    EGOV_KAFKA_PASSWORD="$(cat "$USERS_DIR/admin.password")" EGOV_KAFKA_CA_FILE="$TLS_DIR/ca.pem" \
    "$PY" -m runtime.acls apply --quiet
}

# The port opens before the broker has joined its own quorum; the log line is the real signal.
ready() { port_open "$(node_port "$1")" && grep -q "Kafka Server started" "$(node_dir "$1")/logs/server.log" 2>/dev/null; }

start_node() {
  local n="$1" dir pidfile
  dir="$(node_dir "$n")"
  pidfile="$(node_pidfile "$n")"
  port_open "$(node_port "$n")" && die "port $(node_port "$n") is taken by another process"
  mkdir -p "$dir/logs"
  render_config "$n"
  format_storage "$n"
  [ -f "$dir/logs/server.log" ] && mv "$dir/logs/server.log" "$dir/logs/server.log.previous"
  log "starting $(node_name "$n") on 127.0.0.1:$(node_port "$n")"
  nohup "$JAVA" "${HEAP[@]}" -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$DEPLOY_DIR/kafka/log4j2.properties" -Dkafka.logs.dir="$dir/logs" \
    -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
    >"$dir/logs/stdout.log" 2>&1 &
  record_pid "$pidfile" "$!"
}

# A cluster's nodes start together: none is ready before a majority of the quorum runs.
start() {
  fetch
  secrets
  mkdir -p "$KAFKA_DIR"
  local n started=0
  for n in $(node_ids); do
    pid_alive "$(node_pidfile "$n")" && continue
    start_node "$n"
    started=$((started + 1))
  done
  if [ "$started" = 0 ]; then log "kafka already running on $(bootstrap)"; return 0; fi
  wait_ready
  add_new_scram_users
  apply_acls
  log "kafka ACLs applied"
}

# A node that exited (a bad config) fails the wait at once instead of after its timeout.
ready_or_gone() {
  local n
  for n in $(node_ids); do
    pid_alive "$(node_pidfile "$n")" || die "$(node_name "$n") exited during start-up; see $(node_dir "$n")/logs/server.log"
    ready "$n" || return 1
  done
}

wait_ready() {
  wait_for "kafka" $((90 * NODES)) ready_or_gone
  log "kafka ready on $(bootstrap)"
}

# A cluster's nodes stop together: one by one, the last ones would wait for a quorum that is gone.
stop() {
  local n
  for n in $(node_ids); do stop_pidfile "$(node_name "$n")" "$(node_pidfile "$n")" & done
  wait
}

status() {
  local n down=0
  for n in $(node_ids); do
    if pid_alive "$(node_pidfile "$n")" && ready "$n"; then
      echo "$(node_name "$n"): running (pid $(pid_of "$(node_pidfile "$n")")) on 127.0.0.1:$(node_port "$n") (SASL_SSL)"
    else echo "$(node_name "$n"): stopped"; down=1; fi
  done
  return "$down"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  wait) wait_ready ;;
  fetch) fetch ;;
  fetch-tools) fetch_tools ;;
  tools-classpath) fetch_tools; echo "$TOOLS/*" ;;
  secrets) secrets ;;
  bootstrap) bootstrap ;;
  reset) stop; rm -rf "$KAFKA_DIR" ;;
  *) echo "usage: $0 start|stop|restart|status|wait|fetch|fetch-tools|tools-classpath|reset|secrets|bootstrap" >&2; exit 2 ;;
esac
