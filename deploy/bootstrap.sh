#!/usr/bin/env bash
# Installs what the project needs on a fresh machine, idempotently:
# the JDK and Maven (for the Kafka broker), Prometheus, and the Python virtualenv.
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

VENV="$REPO_DIR/.venv"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating the virtualenv in .venv"
  "$PYTHON" -m venv "$VENV" || { apt_install python3-venv && "$PYTHON" -m venv "$VENV"; }
fi
stamp="$VENV/.installed-$(sha256sum "$REPO_DIR/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  log "installing Python packages"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e "$REPO_DIR[dev]"
  rm -f "$VENV"/.installed-* && touch "$stamp"
fi
"$DEPLOY_DIR/kafka.sh" fetch
