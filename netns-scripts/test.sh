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

# The tests must never touch the host's resolver or host name: remember both, and fail (after
# putting them back) if a client in a namespace changed them.
saved=$(mktemp -d)
cp -a /etc/resolv.conf "$saved/resolv.conf" 2>/dev/null || true
hostname >"$saved/hostname"
status=0
cargo test --all-targets "$@" || status=$?
if [ -e "$saved/resolv.conf" ] && ! cmp -s /etc/resolv.conf "$saved/resolv.conf"; then
  echo "test.sh: a test changed the host's /etc/resolv.conf; restoring it" >&2
  cp -a "$saved/resolv.conf" /etc/resolv.conf
  status=1
fi
if [ "$(hostname)" != "$(cat "$saved/hostname")" ]; then
  echo "test.sh: a test changed the host name; restoring it" >&2
  hostname "$(cat "$saved/hostname")"
  status=1
fi
rm -rf "$saved"
exit $status
