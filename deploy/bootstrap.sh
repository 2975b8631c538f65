#!/usr/bin/env bash
# Installs what the project needs on a fresh machine, idempotently:
# the JDK and Maven (for the Kafka broker and its perf tools), PostgreSQL, Prometheus, and the Python virtualenv (venv.sh).
#   deploy/bootstrap.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

apt_packages=()
command -v java >/dev/null || apt_packages+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || apt_packages+=(maven)
command -v prometheus >/dev/null || apt_packages+=(prometheus)
command -v pg_createcluster >/dev/null || apt_packages+=(postgresql postgresql-contrib)
if [ ${#apt_packages[@]} -gt 0 ]; then
  log "installing Debian packages: ${apt_packages[*]}"
  apt_install "${apt_packages[@]}"
fi

"$DEPLOY_DIR/venv.sh"
"$DEPLOY_DIR/kafka.sh" fetch
"$DEPLOY_DIR/kafka.sh" fetch-tools
