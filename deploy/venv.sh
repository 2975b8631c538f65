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

# The OpenAPI linter and the AsyncAPI parser for make check (@redocly/cli, @asyncapi/parser), each pinned
# with its whole tree in tools/<tool>/package-lock.json.
for tool in redocly asyncapi; do
  TOOL_DIR="$REPO_DIR/tools/$tool"
  tool_stamp="$TOOL_DIR/node_modules/.installed-$(sha256sum "$TOOL_DIR/package-lock.json" | cut -c1-16)"
  if [ ! -f "$tool_stamp" ]; then
    command -v npm >/dev/null || apt_install nodejs npm
    log "installing tools/$tool from its package-lock.json"
    npm ci --prefix "$TOOL_DIR" --no-audit --no-fund --ignore-scripts --loglevel=error
    rm -f "$TOOL_DIR"/node_modules/.installed-* && touch "$tool_stamp"
  fi
done
