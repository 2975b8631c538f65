#!/usr/bin/env bash
# The Python virtualenv in .venv, with exactly the versions (and hashes) of requirements.lock, then the
# project itself in editable mode. Needs only Python 3.11+ (no Debian packages, no Kafka), so
# `make test-unit` and `make check` work on a machine with nothing else.
#   deploy/venv.sh          (make lock re-resolves requirements.lock from pyproject.toml)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VENV="$REPO_DIR/.venv"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating the virtualenv in .venv"
  "$PYTHON" -m venv "$VENV" || { apt_install python3-venv && "$PYTHON" -m venv "$VENV"; }
fi
stamp="$VENV/.installed-$(cat "$REPO_DIR/pyproject.toml" "$REPO_DIR/requirements.lock" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  log "installing Python packages from requirements.lock"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q --require-hashes -r "$REPO_DIR/requirements.lock"
  "$VENV/bin/pip" install -q --no-deps -e "$REPO_DIR"
  rm -f "$VENV"/.installed-* && touch "$stamp"
fi

# The OpenAPI linter for make check (@redocly/cli, pinned with its whole tree in tools/redocly/package-lock.json).
REDOCLY_DIR="$REPO_DIR/tools/redocly"
redocly_stamp="$REDOCLY_DIR/node_modules/.installed-$(sha256sum "$REDOCLY_DIR/package-lock.json" | cut -c1-16)"
if [ ! -f "$redocly_stamp" ]; then
  command -v npm >/dev/null || apt_install nodejs npm
  log "installing @redocly/cli from tools/redocly/package-lock.json"
  npm ci --prefix "$REDOCLY_DIR" --no-audit --no-fund --ignore-scripts --loglevel=error
  rm -f "$REDOCLY_DIR"/node_modules/.installed-* && touch "$redocly_stamp"
fi
