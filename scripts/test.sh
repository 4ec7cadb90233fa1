#!/usr/bin/env bash
# Runs every test: the Swift suites (unit, HTTP conformance, RPC, registry, the real executables under
# the launcher) and the Python suites (schema cross-checks, the official API clients, the dashboard in Chromium, audio, faults).
# Tests use free ports and temporary state directories, so they can run beside a live instance.
set -euo pipefail
cd "$(dirname "$0")/.."
# The Python suites run the release build, the one `make up` runs (Swift 6.3's -O once miscompiled
# /health while every debug-build test passed); the Swift suites below build and run the debug one.
scripts/bootstrap.sh release

echo "==> promtool (Debian's prometheus package) for the Prometheus output check"
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus) >/dev/null
  else
    echo "promtool is missing: install Debian's prometheus package (sudo apt-get install prometheus)" >&2
  fi
fi

echo "==> chromium and chromedriver (Debian) for the dashboard's browser tests"
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver) >/dev/null
  else
    echo "chromium is missing: install Debian's chromium and chromium-driver packages" >&2
  fi
fi

echo "==> espeak-ng and sox (Debian) to speak the audio tests' clips"
if ! command -v espeak-ng >/dev/null 2>&1 || ! command -v sox >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq --no-install-recommends espeak-ng sox) >/dev/null
  else
    echo "espeak-ng or sox is missing: install Debian's espeak-ng and sox packages" >&2
  fi
fi

echo "==> Python test environment (.venv)"
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install -q --disable-pip-version-check -r Tests/Python/requirements.txt

echo "==> building the tests"
set +e
swift build --build-tests -j 2 2>&1 | grep -E "error:|Build complete"
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
  echo "building the tests failed (exit $status)" >&2
  exit 1
fi

echo "==> Swift tests"
# Swift Testing prints a start line per test and argument; keep results, failures and the summary.
swift test --skip-build 2>&1 | grep -vE "^(◇|↳|✔ Test case)"
swift_status=${PIPESTATUS[0]}

echo "==> Python tests"
.venv/bin/python -m pytest -q Tests/Python
python_status=$?

if [ "$swift_status" -ne 0 ] || [ "$python_status" -ne 0 ]; then
  echo "tests failed (swift exit $swift_status, pytest exit $python_status)" >&2
  exit 1
fi
