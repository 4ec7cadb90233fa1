#!/usr/bin/env bash
# Installs what is missing, then runs Llama Runner in the foreground on the default config
# (config/ and state/ in the repository). Ctrl+C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh release
bin="$(swift build -c release --show-bin-path)"
exec "$bin/launcher" up --state-dir "${LLAMA_RUNNER_STATE_DIR:-state}" --config-dir "${LLAMA_RUNNER_CONFIG_DIR:-config}" "$@"
