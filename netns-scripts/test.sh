#!/usr/bin/env bash
# The test command: install what the tests need, then run every test (unit, loopback and the
# network-namespace end-to-end tests with real clients). Needs root for the namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "test.sh: run as root (the end-to-end tests build network namespaces)" >&2
  exit 1
fi
bash netns-scripts/install-test-deps.sh
cargo test --all-targets "$@"
