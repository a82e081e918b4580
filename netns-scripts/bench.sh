#!/usr/bin/env bash
# Benchmark (issue 7): leasedns against ISC Kea and dnsmasq, in two network namespaces joined by
# a veth pair (never on the host). DHCP load comes from perfdhcp acting as a relay (giaddr), DNS
# load from dnsperf. Prints a markdown table of medians and writes it to a file.
# Run as root. Not a test: CI does not run it. Usage: bench.sh --help
# Duration on a 2-core machine: a full run with Kea and dnsmasq about 22 minutes (most of it the
# rate searches: 3 repetitions of 10 s a point, and 120 s of dnsmasq granting leases); --quick
# about 5. --only pg (issue 18: leasedns and Kea against one PostgreSQL server) about 10 with
# --period 6 (as run for the README), longer with the default 10 s points.
# The server runs on CPU 0 and the load generator on CPU 1: anything else running on the machine
# shows up in the figures.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
HELPER="$HERE/bench-helper.py"

usage() {
  cat <<'EOF'
bench.sh [options]   (run as root)
  --quick              short runs (3 s points, 1 repetition, fewer leases and names)
  --only dhcp|dns|mem|fwd|pg  run one part only (default: the first four). fwd: leasedns,
                       dnsmasq and Unbound as caching forwarders to an NSD upstream in a third
                       namespace (cached forwarding over UDP and TCP), and hosts-file names.
                       pg (never part of the default): the DHCP rate search and CPU per
                       DORA with the lease store in one PostgreSQL server that the script
                       starts (initdb in the work directory, as user postgres, on
                       127.0.0.1:55432 inside the server's namespace, pinned to CPU 0 with
                       the server) and stops; leasedns ([lease_database]) and Kea
                       (lease-database postgresql) each on their own database in it, its
                       CPU counted apart
  --servers LIST       comma list of leasedns,kea,dnsmasq (default: all three); for
                       --only pg of leasedns,kea,kea-mt,leasedns-2 (default: the first
                       three; kea-mt is Kea with multi-threading on, 4 threads; leasedns-2 is
                       two leasedns nodes sharing one lease set, each behind its own relay
                       and namespace, with the load split between them: see the report)
  --out FILE           results file (default: bench-results.md in the current directory)
  --no-build           do not run cargo build --release (the binary must exist)
  --reps N             repetitions of each point (default 3; --quick: 1)
  --period S           seconds per DHCP point and per DNS run (default 10; --quick: 3)
  --fixed-rate R[,R..] offered DORA/s for the CPU-per-DORA measurement, one row each
                       (default 2000,4000: rates every server here sustains; --only pg:
                       half the lowest highest rate its search found, to a multiple of 50)
  --mem-leases N       leases to grant for the memory test (default 100000; --quick: 20000)
  --mem-rate R         offered DORA/s while granting them (default: 80 % of the server's
                       highest rate found by the DHCP part in this run, at most 8000; else 2000)
  --mem-cap S          stop granting after S seconds (default 120; --quick: 30)
  --dns-names N        lease names to create and query (default 1000; --quick: 300)
  --keep               keep the work directory (configs, logs, raw output)
  --leasedns-bin PATH  run this binary as leasedns (default target/release/leasedns; implies
                       --no-build), e.g. a stand-in to check the harness itself
Environment: PERF_THREADS=multi runs perfdhcp with two threads (default single: cheaper on
its one pinned core). LEASEDNS_DURABILITY=batch runs leasedns with durability "batch" (default
fsync; either way every ACK waits for the fdatasync that covers it). LEASEDNS_LOG sets its log
filter (default warn,leasedns::daemon=info: warnings only, as Kea is configured, plus the
readiness line).
EOF
}

QUICK=0
ONLY=all
SERVERS=leasedns,kea,dnsmasq
OUT=bench-results.md
BUILD=1
REPS=""
PERIOD=""
FIXED_RATE=2000,4000
FIXED_SET=0
SERVERS_SET=0
MEM_LEASES=""
MEM_RATE=""
MEM_CAP=""
DNS_NAMES=""
KEEP=0
LEASEDNS_BIN="$ROOT/target/release/leasedns"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --only) ONLY=$2; shift ;;
    --servers) SERVERS=$2; SERVERS_SET=1; shift ;;
    --out) OUT=$2; shift ;;
    --no-build) BUILD=0 ;;
    --reps) REPS=$2; shift ;;
    --period) PERIOD=$2; shift ;;
    --fixed-rate) FIXED_RATE=$2; FIXED_SET=1; shift ;;
    --mem-leases) MEM_LEASES=$2; shift ;;
    --mem-rate) MEM_RATE=$2; shift ;;
    --mem-cap) MEM_CAP=$2; shift ;;
    --dns-names) DNS_NAMES=$2; shift ;;
    --keep) KEEP=1 ;;
    --leasedns-bin) LEASEDNS_BIN=$2; BUILD=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
case "$ONLY" in all | dhcp | dns | mem | fwd | pg) ;; *) echo "bench.sh: --only dhcp|dns|mem|fwd|pg" >&2; exit 2 ;; esac
if [ "$ONLY" = pg ] && [ "$SERVERS_SET" = 0 ]; then SERVERS=leasedns,kea,kea-mt; fi
for s in ${SERVERS//,/ }; do
  if [ "$ONLY" = pg ]; then
    case "$s" in leasedns | kea | kea-mt | leasedns-2) ;; *) echo "bench.sh: --only pg: servers are leasedns,kea,kea-mt,leasedns-2 ($s has no PostgreSQL store)" >&2; exit 2 ;; esac
  else
    case "$s" in leasedns | kea | dnsmasq) ;; *) echo "bench.sh: unknown server $s" >&2; exit 2 ;; esac
  fi
done
if [ "$QUICK" = 1 ]; then
  : "${REPS:=1}" "${PERIOD:=3}" "${MEM_LEASES:=20000}" "${MEM_CAP:=30}" "${DNS_NAMES:=300}"
else
  : "${REPS:=3}" "${PERIOD:=10}" "${MEM_LEASES:=100000}" "${MEM_CAP:=120}" "${DNS_NAMES:=1000}"
fi
if [ "$(id -u)" != 0 ]; then
  echo "bench.sh: run as root (it builds network namespaces)" >&2
  exit 1
fi

# Search over offered rates: double from START up to MAX (or halve down to FLOOR), then bisect.
START_RATE=1000
MAX_RATE=64000
FLOOR_RATE=30
BISECT=3
[ "$QUICK" = 1 ] && BISECT=2
CLIENTS=20000       # distinct clients (MACs) per DHCP point
DROP_LIMIT=1        # percent
DNS_OUTSTANDING=100 # dnsperf -q
PERF_THREADS=${PERF_THREADS:-single} # perfdhcp -g: one pinned core, so one thread costs less
LEASEDNS_DURABILITY=${LEASEDNS_DURABILITY:-fsync}
export LEASEDNS_LOG=${LEASEDNS_LOG:-warn,leasedns::daemon=info}

# Addresses: a /14 so that 100,000+ leases fit; the relay address is inside the served subnet.
SRV_IP=10.200.0.1
RELAY_IP=10.200.0.2
PREFIX_LEN=14
NETWORK=10.200.0.0/14
NETMASK=255.252.0.0
POOL_START=10.200.1.0
POOL_END=10.203.255.254

NS_S="lbench-srv-$$"
NS_C="lbench-cli-$$"
# leasedns-2 (the pg part): the second node in its own namespace, with its own link to the
# clients' namespace (its relay 10.204.0.2 in a second /14, which both nodes serve) and a link
# to the server namespace, where PostgreSQL listens on 10.220.0.1 for both nodes.
NS_S2="lbench-srv2-$$"
SRV2_IP=10.204.0.1
RELAY2_IP=10.204.0.2
NETWORK2=10.204.0.0/14
POOL2_START=10.204.1.0
POOL2_END=10.207.255.254
PG_LINK_IP=10.220.0.1
NODE2_LINK_IP=10.220.0.2
NS_U="lbench-up-$$" # the forwarding part's upstream (NSD), joined to the server only
UP_SRV_IP=10.210.0.1
UP_IP=10.210.0.2
FWD_NAMES=1000
FWD_SERVERS=${FWD_SERVERS:-leasedns,dnsmasq,unbound}
UP_PID=""
WORK=$(mktemp -d /var/tmp/leasedns-bench.XXXXXX) # on the real disk, not tmpfs
RAW="$WORK/raw.tsv"
POINTS="$WORK/points.md"
: >"$RAW"
: >"$POINTS"
SRV_PID=""   # the running server (with leasedns-2: its first node),
SRV2_PID=""  # the second node of leasedns-2,
GEN_PID=""   # the running load generator (GEN2_PID: the second one of leasedns-2), and
GEN2_PID=""
PG_PID=""    # the PostgreSQL server of the pg part: the only processes this script ever signals
PG_MODE=0    # 1 while the pg part runs: servers store leases in PostgreSQL
PG_PORT=55432
PG_HOST=127.0.0.1 # the server namespace's own loopback: reachable from there only
T_BEGIN=$(date +%s)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# end_pid PID: end a process this script started (and, by PID, the children it forked).
end_pid() {
  local pid=$1 kid
  kill -0 "$pid" 2>/dev/null || return 0
  while read -r kid; do
    if [ -n "$kid" ]; then kill -TERM "$kid" 2>/dev/null || true; fi
  done < <(tr ' ' '\n' < <(cat "/proc/$pid/task/"*/children 2>/dev/null))
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  # Only the PIDs still running: a finished PID is cleared at once, so none can be reused.
  if [ -n "$GEN_PID" ]; then end_pid "$GEN_PID"; fi
  if [ -n "$GEN2_PID" ]; then end_pid "$GEN2_PID"; fi
  if [ -n "$SRV_PID" ]; then end_pid "$SRV_PID"; fi
  if [ -n "$SRV2_PID" ]; then end_pid "$SRV2_PID"; fi
  if [ -n "$UP_PID" ]; then end_pid "$UP_PID"; fi
  if [ -n "$PG_PID" ]; then pg_stop; fi
  ip netns del "$NS_U" 2>/dev/null || true
  ip netns del "$NS_S" 2>/dev/null || true
  ip netns del "$NS_S2" 2>/dev/null || true
  ip netns del "$NS_C" 2>/dev/null || true
  if [ "$KEEP" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

has_server() { [[ ",$SERVERS," == *",$1,"* ]]; }
want() { [ "$ONLY" = all ] || [ "$ONLY" = "$1" ]; }
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RAW"; } # server metric value

# ---- installation and build ----------------------------------------------------------------

install_deps() {
  # One installer for every script: waits for the apt lock, keeps daemons from starting and
  # disables what an install enabled (kea, nsd and unbound enable themselves for boot).
  bash "$HERE/install-test-deps.sh" bench >&2
}

build_leasedns() {
  has_server leasedns || has_server leasedns-2 || return 0
  if [ "$BUILD" = 1 ]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet) & wait $!
  fi
  if [ ! -x "$LEASEDNS_BIN" ]; then
    echo "bench.sh: $LEASEDNS_BIN missing (drop --no-build, or skip it with --servers kea,dnsmasq)" >&2
    exit 1
  fi
}

# ---- topology ------------------------------------------------------------------------------

netns_up() {
  ip netns add "$NS_S"
  ip netns add "$NS_C"
  ip link add vs0 netns "$NS_S" type veth peer name vc0 netns "$NS_C"
  local ns
  for ns in "$NS_S" "$NS_C"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip netns exec "$ns" ip link set lo up
  done
  ip netns exec "$NS_S" ip addr add "$SRV_IP/$PREFIX_LEN" dev vs0
  ip netns exec "$NS_C" ip addr add "$RELAY_IP/$PREFIX_LEN" dev vc0
  ip netns exec "$NS_S" ip link set vs0 up
  ip netns exec "$NS_C" ip link set vc0 up
  if has_server leasedns-2; then
    ip netns add "$NS_S2"
    ip netns exec "$NS_S2" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip netns exec "$NS_S2" ip link set lo up
    ip link add vs1 netns "$NS_S2" type veth peer name vc1 netns "$NS_C"
    ip link add vd0 netns "$NS_S" type veth peer name vd1 netns "$NS_S2"
    ip netns exec "$NS_S2" ip addr add "$SRV2_IP/$PREFIX_LEN" dev vs1
    ip netns exec "$NS_C" ip addr add "$RELAY2_IP/$PREFIX_LEN" dev vc1
    ip netns exec "$NS_S" ip addr add "$PG_LINK_IP/30" dev vd0
    ip netns exec "$NS_S2" ip addr add "$NODE2_LINK_IP/30" dev vd1
    ip netns exec "$NS_S2" ip link set vs1 up
    ip netns exec "$NS_C" ip link set vc1 up
    ip netns exec "$NS_S" ip link set vd0 up
    ip netns exec "$NS_S2" ip link set vd1 up
  fi
}

# ---- servers -------------------------------------------------------------------------------

# write_conf SERVER DIR [DB]: write the server's config into DIR (leases also live in DIR; in
# the pg part in PostgreSQL: leasedns in database DB, default leasedns, Kea in database kea).
write_conf() {
  local dir=$2
  case "$1" in
    leasedns)
      cat >"$dir/leasedns.toml" <<EOF
domain = "lan"
interfaces = ["vs0"]
lease_file = "$dir/leases.journal"
durability = "$LEASEDNS_DURABILITY"

[dns]
listen = ["$SRV_IP:53"]

[[subnet]]
network = "$NETWORK"
pool_start = "$POOL_START"
pool_end = "$POOL_END"
router = "$SRV_IP"
dns_servers = ["$SRV_IP"]
lease_time = 3600
EOF
      if [ "$PG_MODE" = 1 ]; then
        printf '\n[lease_database]\nurl = "postgresql://leasedns@%s:%s/%s"\n' \
          "$PG_HOST" "$PG_PORT" "${3:-leasedns}" >>"$dir/leasedns.toml"
      fi
      ;;
    leasedns-2)
      # Two nodes, one config each: the same subnets and database, their own interface,
      # DNS address and (unused) journal path.
      local node iface addr
      for node in a b; do
        if [ "$node" = a ]; then iface=vs0 addr=$SRV_IP; else iface=vs1 addr=$SRV2_IP; fi
        cat >"$dir/node-$node.toml" <<EOF
domain = "lan"
interfaces = ["$iface"]
lease_file = "$dir/node-$node.journal"
durability = "$LEASEDNS_DURABILITY"

[dns]
listen = ["$addr:53"]

[[subnet]]
network = "$NETWORK"
pool_start = "$POOL_START"
pool_end = "$POOL_END"
router = "$SRV_IP"
dns_servers = ["$SRV_IP"]
lease_time = 3600

[[subnet]]
network = "$NETWORK2"
pool_start = "$POOL2_START"
pool_end = "$POOL2_END"
router = "$SRV2_IP"
dns_servers = ["$SRV2_IP"]
lease_time = 3600

[lease_database]
url = "postgresql://leasedns@$PG_LINK_IP:$PG_PORT/leasedns"
EOF
      done
      ;;
    kea | kea-mt)
      local db mt='"enable-multi-threading": false'
      db='"type": "memfile", "persist": true, "name": "'"$dir"'/kea-leases4.csv", "lfc-interval": 0'
      if [ "$PG_MODE" = 1 ]; then
        db='"type": "postgresql", "name": "kea", "host": "'"$PG_HOST"'", "port": '"$PG_PORT"',
                     "user": "kea", "password": "bench"'
      fi
      if [ "$1" = kea-mt ]; then
        mt='"enable-multi-threading": true, "thread-pool-size": 4, "packet-queue-size": 64'
      fi
      cat >"$dir/kea.json" <<EOF
{"Dhcp4": {
  "interfaces-config": {"interfaces": ["vs0"], "dhcp-socket-type": "udp"},
  "lease-database": {$db},
  "multi-threading": {$mt},
  "valid-lifetime": 3600,
  "subnet4": [{"id": 1, "subnet": "$NETWORK",
               "pools": [{"pool": "$POOL_START - $POOL_END"}],
               "option-data": [{"name": "routers", "data": "$SRV_IP"},
                               {"name": "domain-name-servers", "data": "$SRV_IP"}]}],
  "loggers": [{"name": "kea-dhcp4", "severity": "WARN",
               "output_options": [{"output": "$dir/kea.log"}]}]
}}
EOF
      ;;
    dnsmasq) : ;; # command-line only, see server_cmd
  esac
}

# server_cmd SERVER DIR: print the command line, one word a line.
server_cmd() {
  local dir=$2
  case "$1" in
    leasedns) printf '%s\n' "$LEASEDNS_BIN" run --config "$dir/leasedns.toml" ;;
    leasedns-2) printf '%s\n' "$LEASEDNS_BIN" run --config "$dir/node-a.toml" ;;
    kea | kea-mt) printf '%s\n' kea-dhcp4 -c "$dir/kea.json" ;;
    dnsmasq)
      printf '%s\n' dnsmasq -k --conf-file=/dev/null --log-facility="$dir/dnsmasq.log" \
        --pid-file="$dir/dnsmasq.pid" --user=root --group=root --interface=vs0 --bind-interfaces \
        --listen-address="$SRV_IP" --no-resolv --no-hosts --no-ping --quiet-dhcp \
        --dhcp-authoritative --dhcp-range="$POOL_START,$POOL_END,$NETMASK,1h" \
        --dhcp-leasefile="$dir/dnsmasq.leases" --dhcp-lease-max=300000 --domain=lan \
        --dhcp-option=3,"$SRV_IP" --dhcp-option=6,"$SRV_IP"
      ;;
  esac
}

# is_ready SERVER DIR: leasedns says so in its log; the others once UDP port 67 is bound.
is_ready() {
  if [ "$1" = leasedns ] || [ "$1" = leasedns-2 ]; then
    grep -q 'leasedns ready' "$2/server.log"
  else
    [ -n "$(ip netns exec "$NS_S" ss -Hlun 'sport = :67' 2>/dev/null)" ]
  fi
}

# start_server SERVER DIR: start it pinned to CPU 0; sets SRV_PID and READY_S (seconds to ready).
start_server() {
  local name=$1 dir=$2 cmd t0 t1 i
  mapfile -t cmd < <(server_cmd "$name" "$dir")
  : >"$dir/server.log"
  t0=$(date +%s%N)
  START_T0=$t0
  KEA_PIDFILE_DIR="$dir" KEA_LOCKFILE_DIR=none \
    ip netns exec "$NS_S" taskset -c 0 "${cmd[@]}" >>"$dir/server.log" 2>&1 &
  SRV_PID=$!
  for ((i = 0; i < 6000; i++)); do
    if is_ready "$name" "$dir"; then
      t1=$(date +%s%N)
      READY_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
      return 0
    fi
    if ! kill -0 "$SRV_PID" 2>/dev/null; then break; fi
    sleep 0.01
  done
  echo "bench.sh: $name did not become ready; its log ($dir/server.log):" >&2
  tail -20 "$dir/server.log" >&2
  exit 1
}

# start_node2 DIR: the second node of leasedns-2, in its namespace, pinned to CPU 0 as well
# (two cores here: the load generators keep CPU 1); sets SRV2_PID.
start_node2() {
  local dir=$1 i
  : >"$dir/node-b.log"
  ip netns exec "$NS_S2" taskset -c 0 "$LEASEDNS_BIN" run --config "$dir/node-b.toml" \
    >>"$dir/node-b.log" 2>&1 &
  SRV2_PID=$!
  for ((i = 0; i < 6000; i++)); do
    if grep -q 'leasedns ready' "$dir/node-b.log"; then return 0; fi
    if ! kill -0 "$SRV2_PID" 2>/dev/null; then break; fi
    sleep 0.01
  done
  echo "bench.sh: the second leasedns node did not become ready; its log ($dir/node-b.log):" >&2
  tail -20 "$dir/node-b.log" >&2
  exit 1
}

# stop_pid PID: TERM, up to 10 s, then KILL (a process this script started).
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_server() {
  if [ -n "$SRV2_PID" ]; then stop_pid "$SRV2_PID"; SRV2_PID=""; fi
  [ -n "$SRV_PID" ] || return 0
  stop_pid "$SRV_PID"
  SRV_PID=""
}

# fresh_server SERVER: a new directory and config, an empty lease store, started.
fresh_server() {
  SRV_DIR=$(mktemp -d "$WORK/$1.XXXX")
  write_conf "$1" "$SRV_DIR"
  if [ "$PG_MODE" = 1 ]; then pg_fresh_db "$1"; fi
  start_server "$1" "$SRV_DIR"
  if [ "$1" = leasedns-2 ]; then start_node2 "$SRV_DIR"; fi
}

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

# srv_ticks: CPU ticks of the running server (both nodes of leasedns-2).
srv_ticks() {
  local t
  t=$(cpu_ticks "$SRV_PID")
  if [ -n "$SRV2_PID" ]; then t=$((t + $(cpu_ticks "$SRV2_PID"))); fi
  echo "$t"
}

# ---- DHCP ----------------------------------------------------------------------------------

# perf RATE PERIOD CLIENTS OUTFILE [extra perfdhcp args]: perfdhcp as a relay, pinned to CPU 1.
# Sets P_ACKS P_DROP P_ACH (achieved DISCOVER rate) P_GEN (perfdhcp CPU % of the period).
perf() {
  local rate=$1 period=$2 clients=$3 out=$4 u s
  shift 4
  if [ -n "$SRV2_PID" ]; then
    perf2 "$rate" "$period" "$clients" "$out" "$@"
    return
  fi
  ip netns exec "$NS_C" /usr/bin/time -f '%U %S' -o "$out.time" taskset -c 1 \
    perfdhcp -4 -g "$PERF_THREADS" -r "$rate" -R "$clients" -p "$period" -W 1000000 -l "$RELAY_IP" "$@" "$SRV_IP" \
    >"$out" 2>&1 &
  GEN_PID=$!
  wait "$GEN_PID" || true # exit 3 means some exchanges did not complete: that is data, not an error
  GEN_PID=""
  read -r _ P_ACKS P_DROP P_ACH < <(python3 "$HELPER" perfdhcp "$out" "$period" "$rate")
  read -r u s < <(tail -1 "$out.time")
  P_GEN=$(awk -v u="$u" -v s="$s" -v p="$period" 'BEGIN { printf "%.0f", 100 * (u + s) / p }')
}

# perf2: the same for leasedns-2: two perfdhcp at half the rate each, half the clients each
# (distinct MACs: -b), one relaying to each node; the figures are their sums (drops weighted
# by DISCOVERs sent).
perf2() {
  local rate=$1 period=$2 clients=$3 out=$4 u s k a d h acks=0 sent=0 dropped=0 gen=0
  shift 4
  local half=$(((rate + 1) / 2)) per=$(((clients + 1) / 2))
  for k in 1 2; do
    local relay=$RELAY_IP srv=$SRV_IP
    if [ "$k" = 2 ]; then relay=$RELAY2_IP srv=$SRV2_IP; fi
    ip netns exec "$NS_C" /usr/bin/time -f '%U %S' -o "$out.$k.time" taskset -c 1 \
      perfdhcp -4 -g "$PERF_THREADS" -r "$half" -R "$per" -p "$period" -W 1000000 \
      -b "mac=00:0c:0$k:00:00:00" -l "$relay" "$@" "$srv" >"$out.$k" 2>&1 &
    if [ "$k" = 1 ]; then GEN_PID=$!; else GEN2_PID=$!; fi
  done
  wait "$GEN_PID" || true
  wait "$GEN2_PID" || true
  GEN_PID="" GEN2_PID=""
  for k in 1 2; do
    read -r d a h _ < <(python3 "$HELPER" perfdhcp "$out.$k" "$period" "$half")
    sent=$((sent + d)) acks=$((acks + a))
    read -r u s < <(tail -1 "$out.$k.time")
    gen=$(awk -v g="$gen" -v u="$u" -v s="$s" -v p="$period" 'BEGIN { print g + 100 * (u + s) / p }')
  done
  P_ACKS=$acks
  P_DROP=$(awk -v a="$acks" -v d="$sent" 'BEGIN { x = d ? 100 * (1 - a / d) : 100; printf "%.3f", (x < 0 ? 0 : x) }')
  P_ACH=$(awk -v d="$sent" -v p="$period" 'BEGIN { printf "%.1f", d / p }')
  P_GEN=$(awk -v g="$gen" 'BEGIN { printf "%.0f", g }')
}

# point SERVER RATE: REPS runs on fresh servers; medians into PT_DROP PT_ACH PT_GEN; PT_CAUSE is
# ok (under DROP_LIMIT % drops at the offered rate; "ok, generator saturated" when perfdhcp used
# its whole core doing it), server (>= DROP_LIMIT % drops while perfdhcp had CPU to spare) or
# generator (perfdhcp could not offer the rate, or its own core was full when drops appeared).
point() {
  local name=$1 rate=$2 r drops=() achs=() gens=()
  for ((r = 1; r <= REPS; r++)); do
    fresh_server "$name"
    perf "$rate" "$PERIOD" "$CLIENTS" "$SRV_DIR/perfdhcp.$rate.$r"
    stop_server
    drops+=("$P_DROP") achs+=("$P_ACH") gens+=("$P_GEN")
  done
  PT_DROP=$(python3 "$HELPER" median "${drops[@]}")
  PT_ACH=$(python3 "$HELPER" median "${achs[@]}")
  PT_GEN=$(python3 "$HELPER" median "${gens[@]}")
  local saturated=0
  awk -v g="$PT_GEN" 'BEGIN { exit !(g >= 95) }' && saturated=1
  if awk -v a="$PT_ACH" -v r="$rate" 'BEGIN { exit !(a < 0.97 * r) }'; then
    PT_CAUSE=generator
  elif awk -v d="$PT_DROP" -v l="$DROP_LIMIT" 'BEGIN { exit !(d >= l) }'; then
    if [ "$saturated" = 1 ]; then PT_CAUSE=generator; else PT_CAUSE=server; fi
  else
    PT_CAUSE=ok
  fi
  local verdict=$PT_CAUSE
  if [ "$saturated" = 1 ] && [ "$PT_CAUSE" = ok ]; then verdict="ok, generator saturated"; fi
  printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$rate" "$PT_ACH" "$PT_DROP" "$PT_GEN" \
    "$verdict" >>"$POINTS"
  log "$name offered $rate/s: sent $PT_ACH/s, drops $PT_DROP %, perfdhcp CPU $PT_GEN % -> $verdict"
}

# search SERVER: the highest offered rate whose median drops stay under DROP_LIMIT.
search() {
  local name=$1 rate=$START_RATE lo=0 hi=0 cause="search ceiling" mid
  while :; do
    point "$name" "$rate"
    if [ "$PT_CAUSE" = ok ]; then
      lo=$rate
      [ $((rate * 2)) -le "$MAX_RATE" ] || break
      rate=$((rate * 2))
    else
      hi=$rate cause=$PT_CAUSE
      break
    fi
  done
  while [ "$lo" = 0 ] && [ "$rate" -gt "$FLOOR_RATE" ]; do
    rate=$((rate / 2))
    point "$name" "$rate"
    if [ "$PT_CAUSE" = ok ]; then lo=$rate; else hi=$rate cause=$PT_CAUSE; fi
  done
  local i
  for ((i = 0; i < BISECT; i++)); do
    if [ "$lo" = 0 ] || [ "$hi" = 0 ]; then break; fi
    mid=$(((lo + hi) / 2))
    [ $((hi - lo)) -gt $((lo / 16)) ] || break
    point "$name" "$mid"
    if [ "$PT_CAUSE" = ok ]; then lo=$mid; else hi=$mid cause=$PT_CAUSE; fi
  done
  record "$name" dhcp_max_rate "$lo"
  if [ "$hi" -gt 0 ]; then
    record "$name" dhcp_max_rate_note "cap: $cause at $hi/s"
  else
    record "$name" dhcp_max_rate_note "cap: $cause"
  fi
}

# cpu_per_dora SERVER: server CPU time (user + system, all threads) per completed DORA at each
# rate of FIXED_RATE, REPS times each.
cpu_per_dora() {
  local name=$1 r rate before after tck pg0=0 pg1=0 xacts
  tck=$(getconf CLK_TCK)
  for rate in ${FIXED_RATE//,/ }; do
    for ((r = 1; r <= REPS; r++)); do
      fresh_server "$name"
      before=$(srv_ticks)
      if [ "$PG_MODE" = 1 ]; then pg0=$(pg_ticks); fi
      perf "$rate" "$PERIOD" "$CLIENTS" "$SRV_DIR/perfdhcp.fixed.$rate.$r"
      after=$(srv_ticks)
      if [ "$PG_MODE" = 1 ]; then pg1=$(pg_ticks); fi
      stop_server
      if [ "$P_ACKS" -gt 0 ]; then
        record "$name" "dhcp_cpu_us@$rate" "$(awk -v t=$((after - before)) -v k="$tck" \
          -v n="$P_ACKS" 'BEGIN { printf "%.2f", 1e6 * t / k / n }')"
      fi
      if [ "$PG_MODE" = 1 ] && [ "$P_ACKS" -gt 0 ]; then
        # The database's side: its CPU over the same run, and the transactions it committed
        # in the server's database during the server's whole life (read once its sessions
        # ended, so their statistics are flushed).
        xacts=$(pg_xacts "$(pg_db "$name")")
        record "$name" "dhcp_pg_cpu_us@$rate" "$(awk -v t=$((pg1 - pg0)) -v k="$tck" \
          -v n="$P_ACKS" 'BEGIN { printf "%.2f", 1e6 * t / k / n }')"
        record "$name" "dhcp_total_cpu_us@$rate" "$(awk -v t=$((after - before + pg1 - pg0)) \
          -v k="$tck" -v n="$P_ACKS" 'BEGIN { printf "%.2f", 1e6 * t / k / n }')"
        record "$name" "dhcp_pg_xact_per_dora@$rate" "$(awk -v x="$xacts" -v n="$P_ACKS" \
          'BEGIN { printf "%.3f", x / n }')"
        log "$name at $rate/s: PostgreSQL CPU $((pg1 - pg0)) ticks, $xacts transactions"
      fi
      record "$name" "dhcp_fixed_done@$rate" \
        "$(awk -v n="$P_ACKS" -v p="$PERIOD" 'BEGIN { printf "%.1f", n / p }')"
      log "$name at $rate/s: $P_ACKS DORA completed, server CPU $((after - before)) ticks"
    done
  done
}

# ---- DNS -----------------------------------------------------------------------------------

dns_bench() {
  local name=$1 n r q="$WORK/$1.queries"
  fresh_server "$name"
  # Lease named addresses through the relay, so the queried names are live lease names.
  ip netns exec "$NS_C" python3 "$HELPER" dora --server "$SRV_IP" --giaddr "$RELAY_IP" \
    --count "$DNS_NAMES" --prefix h --domain lan --out "$q" --window 8 --deadline 300 \
    >"$q.count" &
  GEN_PID=$!
  wait "$GEN_PID"
  GEN_PID=""
  n=$(cat "$q.count")
  log "$name: $n of $DNS_NAMES named leases granted"
  record "$name" dns_names "$n"
  if [ "$n" = 0 ]; then
    record "$name" dns_qps_note "no named lease granted"
    stop_server
    return 0
  fi
  local out qps avg noerr lost p99 cnt
  for ((r = 1; r <= REPS; r++)); do
    out="$SRV_DIR/dnsperf.$r"
    ip netns exec "$NS_C" taskset -c 1 dnsperf -s "$SRV_IP" -d "$q" -l "$PERIOD" \
      -q "$DNS_OUTSTANDING" >"$out" 2>&1 &
    GEN_PID=$!
    wait "$GEN_PID" || true
    GEN_PID=""
    read -r qps avg noerr lost < <(python3 "$HELPER" dnsperf "$out")
    # A second run with per-query output (-v) for the p99; its own cost lowers its qps.
    ip netns exec "$NS_C" taskset -c 1 dnsperf -v -s "$SRV_IP" -d "$q" -l "$PERIOD" \
      -q "$DNS_OUTSTANDING" >"$out.v" 2>&1 &
    GEN_PID=$!
    wait "$GEN_PID" || true
    GEN_PID=""
    read -r p99 cnt < <(python3 "$HELPER" p99 "$out.v")
    rm -f "$out.v"
    record "$name" dns_qps "$qps"
    record "$name" dns_avg_ms "$avg"
    record "$name" dns_p99_ms "$p99"
    record "$name" dns_noerror_pct "$noerr"
    log "$name DNS: $qps q/s, avg $avg ms, p99 $p99 ms ($cnt answers), NOERROR $noerr %, lost $lost %"
  done
  stop_server
}

# ---- forwarding (cached) and hosts-file names -----------------------------------------------
# The upstream: NSD, authoritative for fwd.test with FWD_NAMES A records (TTL 1 day), in its own
# namespace joined to the server's by a second veth pair. Each forwarder in turn runs pinned to
# CPU 0 on $SRV_IP:53 with the same hosts file; dnsperf (CPU 1) first asks every name once (the
# warm-up), then measures answers that come from the forwarder's cache.

upstream_up() {
  local dir="$WORK/nsd" i
  mkdir -p "$dir"
  ip netns add "$NS_U"
  ip link add vu0 netns "$NS_S" type veth peer name vn0 netns "$NS_U"
  ip netns exec "$NS_U" ip link set lo up
  ip netns exec "$NS_S" ip addr add "$UP_SRV_IP/30" dev vu0
  ip netns exec "$NS_U" ip addr add "$UP_IP/30" dev vn0
  ip netns exec "$NS_S" ip link set vu0 up
  ip netns exec "$NS_U" ip link set vn0 up
  {
    printf '$TTL 86400\n@ IN SOA ns.fwd.test. hostmaster.fwd.test. 1 3600 600 86400 3600\n'
    printf '@ IN NS ns.fwd.test.\nns IN A %s\n' "$UP_IP"
    for ((i = 0; i < FWD_NAMES; i++)); do
      printf 'name%d IN A 10.230.%d.%d\n' "$i" $((i / 250)) $((i % 250 + 1))
    done
  } >"$dir/fwd.test.zone"
  cat >"$dir/nsd.conf" <<EOF
server:
  ip-address: $UP_IP
  port: 53
  username: ""
  chroot: ""
  zonesdir: "$dir"
  pidfile: "$dir/nsd.pid"
  database: ""
  xfrdfile: "$dir/xfrd.state"
  zonelistfile: "$dir/zone.list"
  logfile: "$dir/nsd.log"
  server-count: 1
  verbosity: 0
remote-control:
  control-enable: no
zone:
  name: fwd.test
  zonefile: "$dir/fwd.test.zone"
EOF
  ip netns exec "$NS_U" taskset -c 1 nsd -d -c "$dir/nsd.conf" >>"$dir/nsd.out" 2>&1 &
  UP_PID=$!
  for ((i = 0; i < 500; i++)); do
    if ip netns exec "$NS_S" dig +short +time=1 +tries=1 "@$UP_IP" name0.fwd.test A 2>/dev/null | grep -q '^10\.'; then
      return 0
    fi
    sleep 0.02
  done
  echo "bench.sh: NSD did not answer; its log:" >&2
  cat "$dir/nsd.log" "$dir/nsd.out" >&2 2>/dev/null || true
  exit 1
}

# fwd_files: the query files and the hosts file (host<N>.lan, also given to Unbound as
# local-data, since it reads no hosts file).
fwd_files() {
  local i
  : >"$WORK/fwd.queries"
  : >"$WORK/hosts.queries"
  : >"$WORK/hosts"
  : >"$WORK/unbound-local.conf"
  for ((i = 0; i < FWD_NAMES; i++)); do
    printf 'name%d.fwd.test A\n' "$i" >>"$WORK/fwd.queries"
    printf 'host%d.lan A\n' "$i" >>"$WORK/hosts.queries"
    printf '10.240.%d.%d host%d.lan\n' $((i / 250)) $((i % 250 + 1)) "$i" >>"$WORK/hosts"
    printf '  local-data: "host%d.lan. 300 IN A 10.240.%d.%d"\n' "$i" $((i / 250)) $((i % 250 + 1)) >>"$WORK/unbound-local.conf"
  done
}

# fwd_start SERVER: start it as a forwarder to NSD; sets SRV_PID and SRV_DIR.
fwd_start() {
  local name=$1 i
  SRV_DIR=$(mktemp -d "$WORK/fwd-$name.XXXX")
  local dir=$SRV_DIR cmd=()
  case "$name" in
    leasedns)
      cat >"$dir/leasedns.toml" <<EOF
domain = "lan"
interfaces = ["vs0"]
lease_file = "$dir/leases.journal"
durability = "none"

[dns]
listen = ["$SRV_IP:53"]
upstreams = ["$UP_IP"]
hosts_file = "$WORK/hosts"

[[subnet]]
network = "$NETWORK"
pool_start = "$POOL_START"
pool_end = "$POOL_END"
lease_time = 3600
EOF
      cmd=("$LEASEDNS_BIN" run --config "$dir/leasedns.toml") ;;
    dnsmasq)
      cmd=(dnsmasq -k --conf-file=/dev/null --log-facility="$dir/dnsmasq.log" --pid-file="$dir/dnsmasq.pid"
        --user=root --group=root --interface=vs0 --bind-interfaces --listen-address="$SRV_IP"
        --no-resolv --no-hosts --addn-hosts="$WORK/hosts" --server="$UP_IP" --cache-size=10000) ;;
    unbound)
      cat >"$dir/unbound.conf" <<EOF
server:
  interface: $SRV_IP
  port: 53
  do-ip6: no
  num-threads: 1
  so-reuseport: no
  username: ""
  chroot: ""
  directory: "$dir"
  pidfile: "$dir/unbound.pid"
  use-syslog: no
  logfile: "$dir/unbound.log"
  verbosity: 0
  access-control: $NETWORK allow
  module-config: "iterator"
  do-not-query-localhost: no
  local-zone: "test." nodefault
  msg-cache-size: 32m
  rrset-cache-size: 64m
  local-zone: "lan." static
$(cat "$WORK/unbound-local.conf")
forward-zone:
  name: "fwd.test."
  forward-addr: $UP_IP
EOF
      cmd=(unbound -d -c "$dir/unbound.conf") ;;
  esac
  : >"$dir/server.log"
  ip netns exec "$NS_S" taskset -c 0 "${cmd[@]}" >>"$dir/server.log" 2>&1 &
  SRV_PID=$!
  for ((i = 0; i < 1000; i++)); do
    if ip netns exec "$NS_C" dig +short +time=1 +tries=1 "@$SRV_IP" host0.lan A 2>/dev/null | grep -q '^10\.'; then
      return 0
    fi
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.02
  done
  echo "bench.sh: $name did not answer as a forwarder; its log:" >&2
  tail -20 "$dir/server.log" >&2
  exit 1
}

# fwd_run SERVER KIND QUERYFILE MODE: REPS dnsperf runs (plus one -v run for the p99 each),
# recording queries/s, latency and the server's CPU per answered query.
fwd_run() {
  local name=$1 kind=$2 q=$3 mode=$4 r out qps avg noerr lost p99 cnt t0 t1 us
  for ((r = 1; r <= REPS; r++)); do
    out="$SRV_DIR/$kind.$mode.$r"
    t0=$(cpu_ticks "$SRV_PID")
    ip netns exec "$NS_C" taskset -c 1 dnsperf -m "$mode" -s "$SRV_IP" -d "$q" -l "$PERIOD" \
      -c 4 -q "$DNS_OUTSTANDING" >"$out" 2>&1 &
    GEN_PID=$!
    wait "$GEN_PID" || true
    GEN_PID=""
    t1=$(cpu_ticks "$SRV_PID")
    read -r qps avg noerr lost < <(python3 "$HELPER" dnsperf "$out")
    us=$(awk -v d=$((t1 - t0)) -v q="$qps" -v p="$PERIOD" -v hz="$(getconf CLK_TCK)" \
      'BEGIN { if (q > 0) printf "%.1f", d * 1e6 / hz / (q * p); else print 0 }')
    ip netns exec "$NS_C" taskset -c 1 dnsperf -v -m "$mode" -s "$SRV_IP" -d "$q" -l "$PERIOD" \
      -c 4 -q "$DNS_OUTSTANDING" >"$out.v" 2>&1 &
    GEN_PID=$!
    wait "$GEN_PID" || true
    GEN_PID=""
    read -r p99 cnt < <(python3 "$HELPER" p99 "$out.v")
    rm -f "$out.v"
    printf '%s\t%s %s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$kind" "$mode" "$qps" "$avg" "$p99" "$us" "$noerr" >>"$WORK/fwd.tsv"
    log "$name $kind $mode: $qps q/s, avg $avg ms, p99 $p99 ms, $us us CPU/query, NOERROR $noerr %, lost $lost %"
  done
}

fwd_bench() {
  local name=$1
  fwd_start "$name"
  # Warm-up: every name once, so what follows is answered from the cache.
  ip netns exec "$NS_C" dnsperf -s "$SRV_IP" -d "$WORK/fwd.queries" -n 1 -q 10 >"$SRV_DIR/warm" 2>&1 || true
  fwd_run "$name" "cached forwarding" "$WORK/fwd.queries" udp
  fwd_run "$name" "cached forwarding" "$WORK/fwd.queries" tcp
  fwd_run "$name" "hosts-file names" "$WORK/hosts.queries" udp
  stop_server
}

# fwd_table: medians per server and kind, and each server's ratio to dnsmasq and Unbound.
fwd_table() {
  [ -s "$WORK/fwd.tsv" ] || return 0
  python3 - "$WORK/fwd.tsv" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    server, kind, *vals = line.rstrip("\n").split("\t")
    rows.setdefault((kind, server), []).append([float(v) for v in vals])
med = {k: [statistics.median(c) for c in zip(*v)] for k, v in rows.items()}
print("## Forwarding (cached) and hosts-file names")
print()
print("| kind | server | queries/s | vs dnsmasq | vs Unbound | avg ms | p99 ms | server CPU us/query | NOERROR % |")
print("|---|---|---|---|---|---|---|---|---|")
for (kind, server), (qps, avg, p99, us, noerr) in sorted(med.items()):
    def ratio(other):
        o = med.get((kind, other))
        return f"{qps / o[0]:.2f}x" if o and o[0] else "n/a"
    print(f"| {kind} | {server} | {qps:,.0f} | {ratio('dnsmasq')} | {ratio('unbound')} | {avg:.3f} | {p99:.3f} | {us:.1f} | {noerr:.1f} |")
EOF
}

# ---- memory and restart --------------------------------------------------------------------

lease_count() { # SERVER DIR: leases held, read from the server's own store where it is text
  case "$1" in
    kea) tail -n +2 "$2/kea-leases4.csv" | cut -d, -f1 | sort -u | wc -l ;;
    dnsmasq) # it rewrites the whole file around each lease: read until two reads agree
      local a b i
      a=$(wc -l <"$2/dnsmasq.leases")
      for ((i = 0; i < 50; i++)); do
        sleep 0.1
        b=$(wc -l <"$2/dnsmasq.leases")
        if [ "$a" = "$b" ] && [ "$b" -gt 0 ]; then break; fi
        a=$b
      done
      echo "$b" ;;
    leasedns) echo "$P_ACKS" ;; # its journal is binary: count the ACKs perfdhcp received
  esac
}

mem_bench() {
  local name=$1 n rss r rate=$MEM_RATE max
  if [ -z "$rate" ]; then
    max=$(awk -F'\t' -v s="$name" '$1 == s && $2 == "dhcp_max_rate" { print $3 }' "$RAW")
    rate=$((${max:-2500} * 8 / 10))
    [ "$rate" -ge 20 ] || rate=20
    # Beyond this perfdhcp itself falls behind on its one core while it counts 100,000 clients.
    [ "$rate" -le 8000 ] || rate=8000
  fi
  fresh_server "$name"
  local cap=$((MEM_LEASES / rate + 5))
  [ "$cap" -le "$MEM_CAP" ] || cap=$MEM_CAP
  perf "$rate" "$cap" "$MEM_LEASES" "$SRV_DIR/perfdhcp.mem" -n "$MEM_LEASES"
  rss=$(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$SRV_PID/status")
  n=$(lease_count "$name" "$SRV_DIR")
  record "$name" mem_leases "$n"
  if [ "$n" -lt $((MEM_LEASES * 99 / 100)) ]; then
    record "$name" mem_leases_note "of $MEM_LEASES offered at $rate/s, ${cap}s cap"
  fi
  record "$name" mem_rss_mib "$rss"
  log "$name: $n leases (offered at $rate/s), VmHWM $rss MiB"
  local pf="$SRV_DIR/probe" offer restart i
  for ((r = 1; r <= REPS; r++)); do
    stop_server
    # A probe client sends a DISCOVER every 10 ms; the restart ends at the first OFFER.
    ip netns exec "$NS_C" python3 "$HELPER" probe --server "$SRV_IP" --giaddr "$RELAY_IP" \
      --deadline 300 >"$pf" &
    GEN_PID=$!
    for ((i = 0; i < 1000; i++)); do
      if grep -q '^up' "$pf" || ! kill -0 "$GEN_PID" 2>/dev/null; then break; fi
      sleep 0.01
    done
    start_server "$name" "$SRV_DIR"
    wait "$GEN_PID" || true
    GEN_PID=""
    offer=$(tail -1 "$pf")
    restart=$(awk -v a="$START_T0" -v b="$offer" 'BEGIN { printf "%.3f", b - a / 1e9 }')
    [ "$offer" = timeout ] || record "$name" mem_restart_s "$restart"
    [ "$name" != leasedns ] || record "$name" mem_ready_log_s "$READY_S"
    log "$name restart with $n leases: first OFFER after $restart s (ready check $READY_S s)"
  done
  stop_server
}

# ---- PostgreSQL store (--only pg) -----------------------------------------------------------
# One PostgreSQL server for the whole part: initdb into $WORK/pg as user postgres (trust, no
# password: it listens on the server namespace's loopback and on a socket in $WORK/pg only),
# pinned to CPU 0 with the DHCP server (both compete for one core, as on a one-box install;
# perfdhcp keeps CPU 1). fsync and synchronous_commit stay on (the defaults). Each server gets
# a fresh database per run, copied from a template that `leasedns db init` (database
# leasedns_tpl) and `kea-admin db-init pgsql` (kea_tpl) prepared once.

pg_psql() { psql -h "$PG_DIR" -p "$PG_PORT" -U bench -d postgres -qAtX -v ON_ERROR_STOP=1 "$@"; }

pg_db() { case "$1" in leasedns | leasedns-2) echo leasedns ;; *) echo kea ;; esac; }

pg_start() {
  local i
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ ! -x "$PG_BIN/postgres" ]; then
    echo "bench.sh: no /usr/lib/postgresql/*/bin/postgres (install-test-deps.sh bench)" >&2
    exit 1
  fi
  PG_DIR="$WORK/pg"
  chmod 711 "$WORK" # user postgres passes through to its own directory
  mkdir -p "$PG_DIR"
  chown postgres:postgres "$PG_DIR"
  (cd "$PG_DIR" && setpriv --reuid=postgres --regid=postgres --clear-groups \
    "$PG_BIN/initdb" -A trust -U bench -D "$PG_DIR/data") >"$WORK/pg-initdb.log" 2>&1 || {
    cat "$WORK/pg-initdb.log" >&2
    exit 1
  }
  PG_LISTEN=$PG_HOST
  if has_server leasedns-2; then
    # The nodes reach the database over the link between the two server namespaces.
    PG_LISTEN="$PG_HOST,$PG_LINK_IP"
    echo "host all leasedns $PG_LINK_IP/30 trust" >>"$PG_DIR/data/pg_hba.conf"
  fi
  (cd "$PG_DIR" && exec ip netns exec "$NS_S" taskset -c 0 setpriv --reuid=postgres \
    --regid=postgres --clear-groups "$PG_BIN/postgres" -D "$PG_DIR/data" -k "$PG_DIR" \
    -p "$PG_PORT" -c listen_addresses="$PG_LISTEN") >"$WORK/pg-server.log" 2>&1 &
  PG_PID=$!
  for ((i = 0; i < 600; i++)); do
    if grep -q 'ready to accept connections' "$WORK/pg-server.log"; then break; fi
    if ! kill -0 "$PG_PID" 2>/dev/null; then i=600; break; fi
    sleep 0.1
  done
  if [ "$i" -ge 600 ]; then
    echo "bench.sh: PostgreSQL did not start; its log:" >&2
    tail -20 "$WORK/pg-server.log" >&2
    exit 1
  fi
  log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{ print $3 }') up (pid $PG_PID) on $PG_HOST:$PG_PORT in $NS_S"
  pg_psql -c "CREATE ROLE leasedns LOGIN" -c "CREATE ROLE kea LOGIN PASSWORD 'bench'" \
    -c "CREATE DATABASE leasedns_tpl OWNER leasedns" -c "CREATE DATABASE kea_tpl OWNER kea"
  if has_server leasedns || has_server leasedns-2; then
    mkdir -p "$WORK/pg-init"
    PG_MODE=1 write_conf leasedns "$WORK/pg-init" leasedns_tpl
    ip netns exec "$NS_S" "$LEASEDNS_BIN" db init --config "$WORK/pg-init/leasedns.toml" >&2
  fi
  if has_server kea || has_server kea-mt; then
    ip netns exec "$NS_S" kea-admin db-init pgsql -h "$PG_HOST" -P "$PG_PORT" -u kea -p bench \
      -n kea_tpl >"$WORK/kea-admin.log" 2>&1 || {
      cat "$WORK/kea-admin.log" >&2
      exit 1
    }
  fi
}

# pg_stop: fast shutdown (SIGINT) of the server this script started, by its PID.
pg_stop() {
  local i
  [ -n "$PG_PID" ] || return 0
  kill -INT "$PG_PID" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    kill -0 "$PG_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$PG_PID" 2>/dev/null || true
  wait "$PG_PID" 2>/dev/null || true
  PG_PID=""
}

# pg_fresh_db SERVER: the server's database, new and empty (a copy of the template).
pg_fresh_db() {
  local db
  db=$(pg_db "$1")
  pg_psql -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db TEMPLATE ${db}_tpl OWNER $db"
}

# pg_ticks: CPU ticks of the postmaster (with its reaped children) and its live children.
pg_ticks() {
  local kids k
  kids=$(cat "/proc/$PG_PID/task/"*/children 2>/dev/null || true)
  {
    sed 's/.*) //' "/proc/$PG_PID/stat" | awk '{ print $12 + $13 + $14 + $15 }'
    for k in $kids; do sed 's/.*) //' "/proc/$k/stat" 2>/dev/null | awk '{ print $12 + $13 }' || true; done
  } | awk '{ s += $1 } END { print s + 0 }'
}

# pg_xacts DB: transactions committed in DB (its statistics, flushed when sessions end).
pg_xacts() {
  sleep 0.5
  pg_psql -c "SELECT xact_commit FROM pg_stat_database WHERE datname = '$1'"
}

pg_bench() {
  local s lo
  pg_start
  PG_MODE=1
  for s in ${SERVERS//,/ }; do search "$s"; done
  if [ "$FIXED_SET" = 0 ]; then
    lo=$(awk -F'\t' '$2 == "dhcp_max_rate" { if (m == "" || $3 < m) m = $3 } END { print m + 0 }' "$RAW")
    FIXED_RATE=$((lo / 2 / 50 * 50))
    [ "$FIXED_RATE" -ge 50 ] || FIXED_RATE=50
  fi
  for s in ${SERVERS//,/ }; do cpu_per_dora "$s"; done
  PG_MODE=0
  pg_stop
}

# ---- report --------------------------------------------------------------------------------

report() {
  local model kernel
  model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  kernel=$(uname -sr)
  {
    echo "# leasedns benchmark"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), run took $(($(date +%s) - T_BEGIN)) s"
    echo "- machine: $(nproc) CPUs, $model, $kernel"
    local v
    v="perfdhcp $(perfdhcp -v 2>&1 | awk '{ print $NF; exit }')"
    v+=", dnsperf $(dnsperf -h 2>&1 | awk '/^Version/ { print $2 }')"
    if has_server kea || has_server kea-mt; then v+=", kea-dhcp4 $(kea-dhcp4 -v 2>/dev/null)"; fi
    if [ "$ONLY" = pg ]; then v+=", PostgreSQL $("$PG_BIN/postgres" --version | awk '{ print $3 }')"; fi
    if has_server dnsmasq; then v+=", dnsmasq $(dnsmasq -v | awk '{ print $3; exit }')"; fi
    if has_server leasedns || has_server leasedns-2; then v+=", leasedns $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"; fi
    echo "- versions: $v"
    echo "- options: servers=$SERVERS only=$ONLY reps=$REPS period=${PERIOD}s clients=$CLIENTS" \
      "fixed-rate=$FIXED_RATE/s mem-leases=$MEM_LEASES mem-rate=${MEM_RATE:-auto} dns-names=$DNS_NAMES"
    echo "- method: server pinned to CPU 0, load generator to CPU 1, in two network namespaces;"
    echo "  perfdhcp relays (giaddr $RELAY_IP) DORA from $CLIENTS clients; a drop is a DISCOVER"
    echo "  without an ACK within 1 s. Each DHCP point starts a fresh server with an empty lease"
    if [ "$ONLY" = pg ]; then
      echo "  store (see the pg part below). leasedns log $LEASEDNS_LOG."
    else
      echo "  store on disk. leasedns: durability $LEASEDNS_DURABILITY, log $LEASEDNS_LOG; Kea: memfile, persist, single-threaded, no"
      echo "  LFC; dnsmasq: --no-ping, lease file on disk. DNS: dnsperf -q $DNS_OUTSTANDING on A"
      echo "  queries for the names of live leases (h0.lan ...), p99 from a second run with -v."
    fi
    echo "  Medians over the repetitions (n shown when > 1)."
    if [ "$ONLY" = pg ]; then
      echo "- pg part: the lease store of every server is one PostgreSQL server started by the"
      echo "  script (fsync and synchronous_commit on, defaults otherwise), on $PG_HOST:$PG_PORT in"
      echo "  the server's namespace and pinned to CPU 0 with the DHCP server: server and database"
      echo "  share one core. leasedns: [lease_database] (one transaction per batch); Kea:"
      echo "  lease-database postgresql; kea-mt: the same with multi-threading (4 threads, queue"
      echo "  64). leasedns-2: two leasedns nodes on one lease set, each in its own namespace"
      echo "  behind its own relay ($RELAY_IP, $RELAY2_IP: both nodes serve both /14s), the"
      echo "  second reaching the database over a veth link; both nodes pinned to CPU 0 with"
      echo "  the database, two perfdhcp on CPU 1 at half the rate and half the clients each,"
      echo "  figures summed (so two nodes share one core here: this shows what a second node"
      echo "  costs and whether the shared store keeps up, not a second machine's capacity)."
      echo "  Each run gets a fresh database (a copy of one made by leasedns db init or"
      echo "  kea-admin db-init). PostgreSQL CPU: /proc stat of the postmaster and its children"
      echo "  over the measured run; transactions: pg_stat_database xact_commit of the server's"
      echo "  database over the server's life. The machine is shared with other work: compare"
      echo "  the ratios from this one run rather than absolute figures."
    fi
    echo
    if [ "$ONLY" != fwd ]; then python3 "$HELPER" table "$RAW" "$SERVERS"; fi
    if [ -s "$WORK/fwd.tsv" ]; then
      echo
      echo "Forwarding part: NSD upstream ($FWD_NAMES names, TTL 1 day) in a third namespace; each"
      echo "forwarder on CPU 0 with a 10,000-entry cache (Unbound: 1 thread, iterator only), warmed"
      echo "by one pass over the names; dnsperf -c 4 -q $DNS_OUTSTANDING on CPU 1; CPU per query from"
      echo "/proc/PID/stat over the measured run. Hosts-file names: the same $FWD_NAMES-line hosts file"
      echo "(Unbound: the same names as local-data)."
      echo
      fwd_table
    fi
    if [ -s "$POINTS" ]; then
      echo
      echo "## DHCP rate search points (medians)"
      echo
      echo "| server | offered/s | sent/s | drops % | perfdhcp CPU % | verdict |"
      echo "|---|---|---|---|---|---|"
      cat "$POINTS"
    fi
  } >"$OUT"
  cat "$OUT"
}

main() {
  install_deps
  build_leasedns
  netns_up
  local s
  if want dhcp; then
    for s in ${SERVERS//,/ }; do search "$s"; done
    for s in ${SERVERS//,/ }; do cpu_per_dora "$s"; done
  fi
  if want dns; then
    for s in ${SERVERS//,/ }; do
      [ "$s" = kea ] || dns_bench "$s" # Kea has no DNS server
    done
  fi
  if want mem; then
    for s in ${SERVERS//,/ }; do mem_bench "$s"; done
  fi
  if [ "$ONLY" = pg ]; then pg_bench; fi
  if want fwd; then
    upstream_up
    fwd_files
    for s in ${FWD_SERVERS//,/ }; do fwd_bench "$s"; done
  fi
  report
}

main
