#!/usr/bin/env bash
# The compose file's Kafka: the same template as the local broker (deploy/kafka/server.properties), run in
# the apache/kafka image. At first start it makes a throwaway CA and broker certificate with the image's
# keytool (into the egov-tls volume, where the services find ca.pem) and formats storage with one SCRAM
# user per principal, passwords from EGOV_KAFKA_PASSWORD_<PRINCIPAL> (see compose.yaml).
set -euo pipefail
TLS=/etc/egov/tls
DATA=/var/lib/kafka/data
CONF=/tmp/server.properties
KEYSTORE_PASSWORD="${EGOV_KAFKA_KEYSTORE_PASSWORD:?}"

if [ ! -f "$TLS/broker.p12" ]; then
  keytool -genkeypair -alias ca -keyalg EC -groupname secp256r1 -dname "CN=egov-intake compose throwaway CA" \
    -ext bc:c -validity 3650 -keystore "$TLS/ca.p12" -storetype PKCS12 -storepass "$KEYSTORE_PASSWORD"
  keytool -exportcert -rfc -alias ca -keystore "$TLS/ca.p12" -storepass "$KEYSTORE_PASSWORD" -file "$TLS/ca.pem"
  keytool -genkeypair -alias broker -keyalg EC -groupname secp256r1 -dname "CN=kafka" -validity 825 \
    -keystore "$TLS/broker.p12" -storetype PKCS12 -storepass "$KEYSTORE_PASSWORD"
  keytool -certreq -alias broker -keystore "$TLS/broker.p12" -storepass "$KEYSTORE_PASSWORD" |
    keytool -gencert -alias ca -keystore "$TLS/ca.p12" -storepass "$KEYSTORE_PASSWORD" -validity 825 \
      -ext "SAN=dns:kafka,dns:localhost,ip:127.0.0.1" -ext "EKU=serverAuth" -rfc >/tmp/broker.pem
  keytool -importcert -noprompt -alias ca -file "$TLS/ca.pem" -keystore "$TLS/broker.p12" -storepass "$KEYSTORE_PASSWORD"
  keytool -importcert -alias broker -file /tmp/broker.pem -keystore "$TLS/broker.p12" -storepass "$KEYSTORE_PASSWORD"
  chmod 644 "$TLS/ca.pem"
fi

password() { local name="EGOV_KAFKA_PASSWORD_${1^^}"; name="${name//[.-]/_}"; printf '%s' "${!name:?$name is not set}"; }

sed -e "s#@KAFKA_PORT@#9092#g" -e "s#@CONTROLLER_PORT@#9093#g" -e "s#@DATA_DIR@#$DATA#g" -e "s#@TLS_DIR@#$TLS#g" \
  -e "s#@LISTEN_HOST@#0.0.0.0#g" -e "s#@ADVERTISED_HOST@#kafka#g" \
  -e "s#@KEYSTORE_PASSWORD@#$KEYSTORE_PASSWORD#g" -e "s#@BROKER_PASSWORD@#$(password broker)#g" \
  -e "s#@CONTROLLER_PASSWORD@#$(password controller)#g" /etc/egov/kafka/server.properties.template >"$CONF"

if [ ! -f "$DATA/meta.properties" ]; then
  scram=()
  for user in broker ${EGOV_KAFKA_PRINCIPALS:?}; do
    scram+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(password "$user")]")
  done
  /opt/kafka/bin/kafka-storage.sh format -t "${CLUSTER_ID:?}" -c "$CONF" "${scram[@]}"
fi

# For the health check: a client that authenticates as the operator.
cat >/tmp/client.properties <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(password admin)";
ssl.truststore.type=PEM
ssl.truststore.location=$TLS/ca.pem
PROPS
exec /opt/kafka/bin/kafka-server-start.sh "$CONF"
