#!/usr/bin/env bash
# `make warnings` (part of make test): a release build from scratch of Spool's
# own sources has zero compiler warnings. Warnings of the dependencies are
# theirs and not counted. A scratch path of its own, so that no earlier
# incremental build hides a file's warnings.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .spool
log=.spool/warnings.log
rm -rf .build-warnings
if ! swift build -c release --scratch-path .build-warnings >"$log" 2>&1; then
  tail -40 "$log" >&2
  echo "release build failed" >&2
  exit 1
fi
rm -rf .build-warnings
if grep -E "^$PWD/Sources/.*: warning:" "$log"; then
  echo "compiler warnings above: fix them" >&2
  exit 1
fi
echo "release build: no compiler warnings in Sources/"
