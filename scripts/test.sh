#!/usr/bin/env bash
# Runs every test: unit tests, HTTP conformance, RPC, and the real executables under the launcher.
# Tests use free ports and temporary state directories, so they can run beside a live instance.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh debug
echo "==> running the test suite"
set +e
swift build --build-tests -j 2 2>&1 | grep -E "error:|Build complete"
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
  echo "building the tests failed (exit $status)" >&2
  exit 1
fi
# Swift Testing prints a start line per test and argument; keep results, failures and the summary.
swift test --skip-build 2>&1 | grep -vE "^(◇|↳|✔ Test case)"
exit "${PIPESTATUS[0]}"
