#!/usr/bin/env bash
# demo.sh: leasedns on a LAN of network namespaces. Builds leasedns (release), builds a bridge,
# a server and three clients, starts leasedns, runs dhclient, udhcpc and dhcpcd (if installed)
# with host names, prints each client's address and the A and PTR answers for each name, then
# waits for Ctrl-C (or exits after one round with --once). Everything is removed on exit.
#
# Usage: sudo netns-scripts/demo.sh [--once]
#   LEASEDNS_BIN=/path/to/leasedns  use this binary instead of building one
#   DEMO_NET=10.77.0                the LAN's first three octets
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
# shellcheck source=netns-scripts/lib.sh
source "$HERE/lib.sh"

ONCE=0
case "${1:-}" in
    --once) ONCE=1 ;;
    "") ;;
    *) die "usage: $0 [--once]" ;;
esac
[[ $EUID -eq 0 ]] || die "run as root (network namespaces need CAP_NET_ADMIN)"
# The clients and dig come from Debian's packages; install them if missing (only those: no
# server, no service left enabled).
bash "$HERE/install-test-deps.sh" demo
for tool in ip dig dhclient busybox unshare; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

NET=${DEMO_NET:-10.77.0}
DOMAIN=lan
PREFIX=lddemo$(($$ % 100000))
SERVER_PID=""
SLEEP_PID=""
WORK=$(mktemp -d /tmp/leasedns-demo.XXXXXX)

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n $SLEEP_PID ]] && kill "$SLEEP_PID" 2>/dev/null
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    lan_destroy
    rm -rf "${WORK:?}"
    log "cleaned up"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -n ${LEASEDNS_BIN:-} ]]; then
    BIN=$LEASEDNS_BIN
else
    log "building leasedns (release)"
    cargo build --release --manifest-path "$ROOT/Cargo.toml" &
    wait $!
    BIN=$ROOT/target/release/leasedns
fi
[[ -x $BIN ]] || die "no leasedns binary at $BIN"

log "building the LAN $NET.0/24 (namespaces $PREFIX-*)"
lan_create "$PREFIX" "$NET" 3 "$WORK"

cat >"$WORK/leasedns.toml" <<EOF
domain = "$DOMAIN"
interfaces = ["$LAN_IFACE"]
lease_file = "$WORK/leases.journal"

[dns]
listen = ["$NET.1:53"]

[[subnet]]
network = "$NET.0/24"
pool_start = "$NET.100"
pool_end = "$NET.199"
router = "$NET.1"
dns_servers = ["$NET.1"]
lease_time = 600
interface = "$LAN_IFACE"
EOF
"$BIN" check-config "$WORK/leasedns.toml"

log "starting leasedns in $LAN_SRV (log: $WORK/leasedns.log)"
ip netns exec "$LAN_SRV" "$BIN" run --config "$WORK/leasedns.toml" >"$WORK/leasedns.log" 2>&1 &
SERVER_PID=$!
if ! wait_log "$WORK/leasedns.log" "leasedns ready" 10 "$SERVER_PID"; then
    cat "$WORK/leasedns.log" >&2
    die "leasedns did not become ready"
fi

C0=${LAN_CLIENTS[0]} C1=${LAN_CLIENTS[1]} C2=${LAN_CLIENTS[2]}
NAMES=(laptop phone tablet)
log "dhclient in $C0 as ${NAMES[0]}"
run_dhclient "$C0" "${NAMES[0]}" || log "dhclient got no lease (see $WORK/$C0-dhclient/log)"
log "udhcpc in $C1 as ${NAMES[1]}"
run_udhcpc "$C1" "${NAMES[1]}" || log "udhcpc got no lease (see $WORK/$C1-udhcpc/log)"
if command -v dhcpcd >/dev/null; then
    log "dhcpcd in $C2 as ${NAMES[2]}"
    run_dhcpcd "$C2" "${NAMES[2]}" || log "dhcpcd got no lease (see $WORK/$C2-dhcpcd/log)"
else
    log "dhcpcd not installed: udhcpc in $C2 as ${NAMES[2]}"
    run_udhcpc "$C2" "${NAMES[2]}" || log "udhcpc got no lease (see $WORK/$C2-udhcpc/log)"
fi

echo
echo "Client addresses:"
for i in 0 1 2; do
    printf '  %-16s %-12s %s\n' "${LAN_CLIENTS[i]}" "${NAMES[i]}" "$(ns_addr "${LAN_CLIENTS[i]}")"
done
echo "DNS answers from $NET.1 (asked from $LAN_SRV):"
for name in "${NAMES[@]}"; do
    show_dns "$LAN_SRV" "$NET.1" "$name.$DOMAIN"
done
echo

if ((ONCE)); then
    exit 0
fi
log "running; try: ip netns exec $C0 dig @$NET.1 ${NAMES[1]}.$DOMAIN   (Ctrl-C to stop)"
sleep infinity &
SLEEP_PID=$!
wait "$SLEEP_PID"
