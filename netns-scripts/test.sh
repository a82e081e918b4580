#!/usr/bin/env bash
# The test command: install what the tests need, then run every test (unit, loopback and the
# network-namespace end-to-end tests with real clients). Needs root for the namespaces.
# Arguments go to `cargo test` (e.g. `netns-scripts/test.sh --test e2e dns::`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "test.sh: run as root (the end-to-end tests build network namespaces)" >&2
  exit 1
fi
bash netns-scripts/install-test-deps.sh test
# The package test (e2e package::) builds the .deb with cargo-deb.
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked

# The tests must leave the host as they found it: its resolver, its host name, the services
# enabled for boot and what listens on port 53. Remember each, and fail (after putting back what
# can be put back) if a test changed it.
saved=$(mktemp -d)
trap 'rm -rf "$saved"' EXIT
cp -a /etc/resolv.conf "$saved/resolv.conf" 2>/dev/null || true
hostname >"$saved/hostname"
host_state() {
  find /etc/systemd/system -type l 2>/dev/null | sort
  ss -H -lntu 2>/dev/null | awk '$5 ~ /:53$/ {print "listening:", $1, $5}' | sort
}
host_state >"$saved/state"
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
if ! diff <(cat "$saved/state") <(host_state) >"$saved/diff"; then
  echo "test.sh: the tests changed the host's services or port 53:" >&2
  cat "$saved/diff" >&2
  status=1
fi
exit $status
