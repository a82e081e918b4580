# shellcheck shell=bash
# lib.sh: shared functions for the leasedns namespace demos. Builds a LAN of network namespaces
# (bridge + server + clients) and drives DHCP clients inside them. Never touches the host's
# interfaces, resolver, lease files or host name. Source it; it defines functions only.
#
# State lives in these globals (set by lan_create):
#   LAN_PREFIX  namespace name prefix       LAN_NET   first three octets, e.g. 10.77.0
#   LAN_WORK    scratch directory           LAN_NS    every namespace created, in order
#   LAN_CLIENTS client namespace names      LAN_SRV   server namespace name

LAN_NS=()
LAN_CLIENTS=()
LAN_IFACE=eth0

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# lan_create PREFIX NET NCLIENTS WORKDIR: bridge namespace PREFIX-br with br0, server PREFIX-srv
# with NET.1/24, clients PREFIX-c0.. without addresses. Veth pairs are created directly inside
# the namespaces; IPv6 is off; /etc/netns/<ns>/resolv.conf points at the server.
lan_create() {
    LAN_PREFIX=$1 LAN_NET=$2 LAN_WORK=$4
    local n=$3 i ns port
    LAN_SRV=$LAN_PREFIX-srv
    LAN_CLIENTS=()
    for ((i = 0; i < n; i++)); do LAN_CLIENTS+=("$LAN_PREFIX-c$i"); done

    _lan_add_ns "$LAN_PREFIX-br"
    ip -n "$LAN_PREFIX-br" link add br0 type bridge forward_delay 0
    ip -n "$LAN_PREFIX-br" link set br0 up
    i=0
    for ns in "$LAN_SRV" "${LAN_CLIENTS[@]}"; do
        _lan_add_ns "$ns"
        port=p$i
        ip link add "$LAN_IFACE" address "$(printf '02:1d:00:77:00:%02x' $((i + 1)))" netns "$ns" \
            type veth peer name "$port" netns "$LAN_PREFIX-br"
        ip -n "$LAN_PREFIX-br" link set "$port" master br0 up
        ip -n "$ns" link set "$LAN_IFACE" up
        mkdir -p "/etc/netns/$ns"
        echo "nameserver $LAN_NET.1" >"/etc/netns/$ns/resolv.conf"
        i=$((i + 1))
    done
    ip -n "$LAN_SRV" addr add "$LAN_NET.1/24" dev "$LAN_IFACE"
}

_lan_add_ns() {
    ip netns add "$1"
    LAN_NS+=("$1")
    ip -n "$1" link set lo up
    ip netns exec "$1" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# lan_destroy: kills every process inside our namespaces (by PID), deletes the namespaces and
# their /etc/netns files. Safe to call twice and on a half-built LAN.
lan_destroy() {
    local ns pid pids=()
    for ns in "${LAN_NS[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do pids+=("$pid"); done
    done
    if ((${#pids[@]})); then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        sleep 0.3
        kill -KILL "${pids[@]}" 2>/dev/null || true
    fi
    for ((i = ${#LAN_NS[@]} - 1; i >= 0; i--)); do
        ns=${LAN_NS[i]}
        ip netns del "$ns" 2>/dev/null || true
        rm -rf "/etc/netns/${ns:?}"
    done
    rmdir /etc/netns 2>/dev/null || true
    LAN_NS=()
}

# ns_addr NS: the IPv4 address on eth0 of NS (empty if none).
ns_addr() {
    ip -n "$1" -4 -o addr show dev "$LAN_IFACE" | awk '{ split($4, a, "/"); print a[1]; exit }'
}

# wait_addr NS SECONDS: waits until NS has an address; prints it.
wait_addr() {
    local deadline=$((SECONDS + $2)) a
    while ((SECONDS < deadline)); do
        a=$(ns_addr "$1")
        if [[ -n $a ]]; then echo "$a"; return 0; fi
        sleep 0.2
    done
    return 1
}

# wait_log FILE PATTERN SECONDS PID: waits until FILE contains PATTERN while PID lives.
wait_log() {
    local deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        kill -0 "$4" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# _hook FILE: writes a client hook script that applies addresses with ip (dhclient: $reason and
# new_* variables; udhcpc: $1 and $ip/$mask).
_hook() {
    cat >"$1" <<'EOF'
#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
case "${reason:-$1}" in
    PREINIT) ip link set dev "$interface" up ;;
    BOUND|RENEW|REBIND|REBOOT) ip -4 addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
    EXPIRE|FAIL|RELEASE|STOP|deconfig) ip -4 addr flush dev "$interface" ;;
    bound|renew) ip -4 addr flush dev "$interface"; ip -4 addr add "$ip/$mask" dev "$interface" ;;
esac
exit 0
EOF
    chmod +x "$1"
}

# run_dhclient NS NAME: ISC dhclient with its own -cf/-pf/-lf/-sf, under unshare --uts; returns
# once bound (dhclient then backgrounds itself).
run_dhclient() {
    local ns=$1 name=$2 d=$LAN_WORK/$1-dhclient
    mkdir -p "$d"
    printf 'timeout 15;\nretry 1;\nsend host-name "%s";\n' "$name" >"$d/dhclient.conf"
    _hook "$d/hook.sh"
    ip netns exec "$ns" unshare --uts dhclient -4 -1 -cf "$d/dhclient.conf" -pf "$d/pid" \
        -lf "$d/leases" -sf "$d/hook.sh" "$LAN_IFACE" >"$d/log" 2>&1 &
    wait $!
}

# release_dhclient NS: DHCPRELEASE and stop, with the same files.
release_dhclient() {
    local ns=$1 d=$LAN_WORK/$1-dhclient
    ip netns exec "$ns" unshare --uts dhclient -4 -r -cf "$d/dhclient.conf" -pf "$d/pid" \
        -lf "$d/leases" -sf "$d/hook.sh" "$LAN_IFACE" >>"$d/log" 2>&1 &
    wait $!
}

# run_udhcpc NS NAME: busybox udhcpc in the background (SIGUSR2 releases); waits for an address.
# Its PID is in $LAN_WORK/NS-udhcpc/pid.
run_udhcpc() {
    local ns=$1 name=$2 d=$LAN_WORK/$1-udhcpc
    mkdir -p "$d"
    _hook "$d/hook.sh"
    ip netns exec "$ns" unshare --uts busybox udhcpc -f -n -i "$LAN_IFACE" -T 3 -t 4 \
        -s "$d/hook.sh" -p "$d/pid" -x "hostname:$name" >"$d/log" 2>&1 &
    wait_addr "$ns" 20 >/dev/null
}

# run_dhcpcd NS NAME: dhcpcd in a private mount namespace (its run and lease directories are
# fixed paths: a tmpfs over /run and our own directory over /var/lib/dhcpcd), with its own
# config and a no-op hook script, so it never rewrites resolv.conf or the host name.
run_dhcpcd() {
    local ns=$1 name=$2 d=$LAN_WORK/$1-dhcpcd
    mkdir -p "$d/db"
    printf '# leasedns demo\nhostname %s\nipv4only\nnoarp\nnogateway\nnohook resolv.conf, hostname\n' \
        "$name" >"$d/dhcpcd.conf"
    printf '#!/bin/sh\nexit 0\n' >"$d/hook.sh"
    chmod +x "$d/hook.sh"
    # shellcheck disable=SC2016 # the inner script expands its own positional arguments
    ip netns exec "$ns" unshare --uts -m --propagation private sh -c '
        mount -t tmpfs tmpfs /run && mount --bind "$1" /var/lib/dhcpcd &&
        exec dhcpcd -f "$2" -c "$3" -4 -t 20 -w "$4"' sh "$d/db" "$d/dhcpcd.conf" "$d/hook.sh" \
        "$LAN_IFACE" >"$d/log" 2>&1 &
    wait $!
}

# show_dns NS SERVER NAME: prints the A answer for NAME and the PTR answer for it.
show_dns() {
    local ns=$1 srv=$2 name=$3 a ptr
    a=$(ip netns exec "$ns" dig "@$srv" +short +time=1 +tries=3 "$name" A)
    ptr=""
    [[ -n $a ]] && ptr=$(ip netns exec "$ns" dig "@$srv" +short +time=1 +tries=3 -x "${a%%$'\n'*}")
    printf '  %-16s A %-15s PTR %s\n' "$name" "${a:-(none)}" "${ptr:-(none)}"
}
