#!/usr/bin/env bash
# Install the Debian packages a caller needs (run as root on Debian 12 or later), and leave the
# host as it was otherwise: no service started, none left enabled for boot.
#
# Usage: install-test-deps.sh [PROFILE...]     (default: test)
#   demo   the demo's clients and dig: dhclient, udhcpc (busybox), dhcpcd, dig
#   test   everything the test suite drives (the demo's set plus relays, servers and tools)
#   bench  what netns-scripts/bench.sh runs (perfdhcp, dnsperf, kea, dnsmasq, nsd, unbound,
#          postgresql for --only pg)
#
# - waits for the dpkg and apt locks (another apt may be running: an unattended upgrade, a
#   second test run) instead of failing at once;
# - runs `apt-get update` once, and only when something is missing;
# - keeps packages from starting their daemons (a policy-rc.d for the install's duration), and
#   disables every unit the install enabled for boot (bind9, ddclient, nsd, unbound and kea
#   enable themselves in their postinst): on a router, named would take port 53 at next boot.
set -euo pipefail

declare -A PROFILE=(
  # dig: bind9-dnsutils; udhcpc: busybox; dhcpcd-base: the binary without a service.
  [demo]="iproute2 procps isc-dhcp-client busybox dhcpcd-base bind9-dnsutils"
  # dnsmasq-base: the harness self-test's reference server (binary only). isc-dhcp-relay and
  # kea-admin (perfdhcp): relayed segments and load. bind9: the primary the outbound DDNS tests
  # update. ddclient (perl), curl, openssl: DynDNS2 over HTTP and HTTPS. knot-dnsutils: kdig.
  # nsd, unbound: an upstream and a peer resolver for the DNS tests. stress-ng: the CPU hog of
  # the load check. tcpdump, nmap: packet captures and nmap's DHCP probe. strace: the order of
  # fdatasync and ACK. e2fsprogs, util-linux: the ext4 loop image of the power-cut tests.
  # prometheus: promtool checks /metrics (its daemon is kept stopped and disabled). systemd:
  # systemd-analyze verifies the shipped unit. chromium, chromium-driver: the status page test
  # (headless, driven over WebDriver). postgresql: initdb, postgres and psql for the lease
  # database tests, which start their own server in a temporary directory as user postgres
  # (the package creates the user; its own cluster, 15/main, is kept stopped: see below).
  [test]="iproute2 procps isc-dhcp-client busybox dhcpcd-base bind9-dnsutils dnsmasq-base
          isc-dhcp-relay kea-admin bind9 ddclient curl openssl knot-dnsutils nsd unbound
          stress-ng tcpdump nmap strace e2fsprogs util-linux prometheus
          systemd chromium chromium-driver postgresql"
  # bench: postgresql for the PostgreSQL store part (bench.sh --only pg starts its own server;
  # the package's cluster is kept stopped as above); kea-admin db-init needs psql from it too.
  [bench]="iproute2 util-linux time python3 kea-admin kea-dhcp4-server dnsmasq-base dnsperf
           nsd unbound bind9-dnsutils postgresql"
)

profiles=("$@")
[ ${#profiles[@]} -gt 0 ] || profiles=(test)
wanted=()
for p in "${profiles[@]}"; do
  [ -n "${PROFILE[$p]:-}" ] || { echo "install-test-deps.sh: unknown profile '$p'" >&2; exit 2; }
  read -r -a list <<<"$(echo ${PROFILE[$p]})"
  wanted+=("${list[@]}")
done

missing=()
for p in $(printf '%s\n' "${wanted[@]}" | sort -u); do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "install-test-deps.sh: missing ${missing[*]}; run as root to install them" >&2
  exit 1
fi

# apt-get with a wait for the dpkg lock (DPkg::Lock::Timeout) and, for the lists lock that
# `apt-get update` takes (older apt does not wait on it), a retry while another apt holds it.
apt_get() {
  local try out
  for try in $(seq 1 60); do
    if out=$(DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@" 2>&1); then
      [ -n "$out" ] && printf '%s\n' "$out" | tail -n 3
      return 0
    fi
    if ! grep -q 'Could not get lock\|Unable to lock\|is held by process' <<<"$out"; then
      printf '%s\n' "$out" >&2
      return 1
    fi
    echo "install-test-deps.sh: another apt holds the lock; waiting (try $try of 60)" >&2
    sleep 10
  done
  echo "install-test-deps.sh: the apt lock was not released in 10 minutes" >&2
  return 1
}

# Units enabled for boot, as the symlinks under /etc/systemd/system (works without a running
# systemd, e.g. in a container or chroot).
enabled_links() { find /etc/systemd/system -type l 2>/dev/null | sort; }

# PostgreSQL clusters running now (pg_lsclusters, from postgresql-common), to stop any other
# after the install: Debian's postgresql creates and would start the 15/main cluster.
online_clusters() {
  command -v pg_lsclusters >/dev/null 2>&1 || return 0
  pg_lsclusters -h 2>/dev/null | awk '$4 == "online" { print $1 " " $2 }' | sort
}

before=$(mktemp)
enabled_links >"$before"
clusters_before=$(online_clusters)
policy=0
cleanup() {
  [ "$policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  # Disable whatever the install enabled (and remove any link systemctl left behind).
  local link unit
  while read -r link; do
    [ -n "$link" ] || continue
    unit=$(basename "$link")
    systemctl disable --no-reload "$unit" >/dev/null 2>&1 || true
    [ -L "$link" ] && rm -f "$link"
    echo "install-test-deps.sh: disabled $unit (the package enabled it for boot)" >&2
  done < <(comm -13 "$before" <(enabled_links))
  rm -f "$before"
  # Stop any PostgreSQL cluster the install started (policy-rc.d should have kept it down).
  local cluster
  while read -r cluster; do
    [ -n "$cluster" ] || continue
    pg_ctlcluster $cluster stop >/dev/null 2>&1 || true
    echo "install-test-deps.sh: stopped PostgreSQL cluster $cluster (the package started it)" >&2
  done < <(comm -13 <(printf '%s\n' "$clusters_before") <(online_clusters))
}
trap cleanup EXIT

if [ ! -e /usr/sbin/policy-rc.d ]; then
  # Keep packages from starting their services on install (invoke-rc.d asks this script).
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  policy=1
fi

echo "install-test-deps.sh: installing ${missing[*]}" >&2
apt_get update -qq
apt_get install -y -qq --no-install-recommends "${missing[@]}"
