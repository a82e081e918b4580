#!/usr/bin/env bash
# package-test.sh: the Debian package end to end, without installing it on this host. Builds
# target/debian/leasedns_*.deb (dist/build-deb.sh: cargo build --release, man pages, cargo deb),
# checks its control data (dpkg-deb -I) and file list (dpkg-deb -c), unpacks it into a
# throwaway root (dpkg-deb -x), runs lintian if installed, verifies the unpacked unit with
# systemd-analyze, then runs the unpacked binary with the unpacked default config adapted to a
# namespace LAN: a real udhcpc client gets a lease and dig resolves its name. Everything it
# made is removed on exit. Prints "package test passed" at the end.
#
# Usage: sudo netns-scripts/package-test.sh [--no-build]
#   --no-build             use the newest existing target/debian/leasedns_*.deb
#   CARGO_TARGET_DIR=DIR   build in (and take the package from) DIR/debian
#   PKG_NET=10.162.0       the LAN's first three octets (the e2e test uses its LAN index 112)
#   PKG_PREFIX=NAME        the namespaces' name prefix (default ldpkg<pid>)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(dirname "$HERE")
# shellcheck source=netns-scripts/lib.sh
source "$HERE/lib.sh"

BUILD=1
case "${1:-}" in
    --no-build) BUILD=0 ;;
    "") ;;
    *) die "usage: $0 [--no-build]" ;;
esac
[[ $EUID -eq 0 ]] || die "run as root (network namespaces need CAP_NET_ADMIN)"
for tool in ip dig busybox unshare dpkg-deb gzip; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

NET=${PKG_NET:-10.162.0}
PREFIX=${PKG_PREFIX:-ldpkg$(($$ % 100000))}
SERVER_PID=""
WORK=$(mktemp -d /tmp/leasedns-package.XXXXXX)

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    lan_destroy
    rm -rf "${WORK:?}"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { die "package: $*"; }

if ((BUILD)); then
    log "building the package (dist/build-deb.sh)"
    "$SRC/dist/build-deb.sh" &
    wait $!
fi
# shellcheck disable=SC2012
DEB=$(ls -t "${CARGO_TARGET_DIR:-$SRC/target}"/debian/leasedns_*.deb 2>/dev/null | head -n1)
[[ -n $DEB ]] || fail "no target/debian/leasedns_*.deb (build it with dist/build-deb.sh)"
log "checking $DEB"

# Control data: name, dependencies, the conffile, maintainer scripts that never enable or start.
INFO=$(dpkg-deb -I "$DEB")
grep -q '^ Package: leasedns$' <<<"$INFO" || fail "Package is not leasedns"
grep -q '^ Depends: .*adduser' <<<"$INFO" || fail "Depends lacks adduser"
dpkg-deb -e "$DEB" "$WORK/control"
grep -qx '/etc/leasedns/leasedns.toml' "$WORK/control/conffiles" || fail "the config is no conffile"
for script in postinst prerm postrm; do
    [[ -x $WORK/control/$script ]] || fail "no executable $script"
done
for script in postinst prerm postrm; do
    sh -n "$WORK/control/$script" || fail "$script is no valid sh"
done
grep -q 'adduser --system' "$WORK/control/postinst" || fail "postinst creates no system user"
# (try-restart on upgrade restarts only a service that runs already.)
if grep -v '^ *#' "$WORK/control/postinst" |
    grep -Eq 'systemctl +(--[a-z-]+ +)*(enable|start|restart|reload-or-restart) |deb-systemd-helper'; then
    fail "postinst enables or starts the service"
fi
grep -q 'purge)' "$WORK/control/postrm" || fail "postrm has no purge case"

# File list: each shipped path.
LIST=$(dpkg-deb -c "$DEB")
for path in ./usr/bin/leasedns ./lib/systemd/system/leasedns.service \
    ./etc/leasedns/leasedns.toml ./usr/share/man/man1/leasedns.1.gz \
    ./usr/share/man/man1/leasedns-run.1.gz ./usr/share/doc/leasedns/LICENSE-MIT \
    ./usr/share/doc/leasedns/LICENSE-APACHE ./usr/share/doc/leasedns/copyright; do
    grep -q " $path\$" <<<"$LIST" || fail "$path is not in the package"
done
grep -Eq '^-rw-r----- (0/0|root/root) .* \./etc/leasedns/leasedns\.toml$' <<<"$LIST" ||
    fail "the config is not 0640 root:root in the package"

# A throwaway root: the package's files, nothing of this host touched.
ROOT=$WORK/root
dpkg-deb -x "$DEB" "$ROOT"
BIN=$ROOT/usr/bin/leasedns
[[ -x $BIN ]] || fail "the unpacked binary is not executable"
"$BIN" --version | grep -q '^leasedns ' || fail "the unpacked binary does not run"
"$BIN" check-config "$ROOT/etc/leasedns/leasedns.toml" >/dev/null ||
    fail "the packaged config is invalid"
gzip -dc "$ROOT/usr/share/man/man1/leasedns-run.1.gz" | grep -qF '\-\-config\fR \fI<CONFIG>' ||
    fail "leasedns-run(1) does not document --config"
if command -v man >/dev/null; then
    MANWIDTH=80 man -l "$ROOT/usr/share/man/man1/leasedns.1.gz" 2>/dev/null | grep -q 'SUBCOMMANDS' ||
        fail "man cannot render leasedns(1)"
fi
if command -v lintian >/dev/null; then
    log "lintian"
    lintian --fail-on error "$DEB" || fail "lintian reports errors"
else
    log "lintian is not installed: skipped (Debian package lintian)"
fi
if command -v systemd-analyze >/dev/null; then
    # verify wants ExecStart's binary to exist: point the unit at the unpacked one.
    sed "s#/usr/bin/leasedns#$BIN#g" "$ROOT/lib/systemd/system/leasedns.service" \
        >"$WORK/leasedns.service"
    # MANPATH: Documentation=man:leasedns(1) must resolve to the packaged page.
    said=$(MANPATH=$ROOT/usr/share/man systemd-analyze verify "$WORK/leasedns.service" 2>&1 || true)
    [[ -z $said ]] || fail "systemd-analyze verify: $said"
fi
log "package contents ok"

# The packaged config on a namespace LAN: its subnet moved to $NET, its lease file into a
# stand-in for /var/lib/leasedns.
lan_create "$PREFIX" "$NET" 1 "$WORK"
STATE=$WORK/var/lib/leasedns
mkdir -p "$STATE"
sed -e "s/192\.168\.1\./$NET./g" -e "s#/var/lib/leasedns/#$STATE/#" \
    "$ROOT/etc/leasedns/leasedns.toml" >"$WORK/leasedns.toml"
"$BIN" check-config "$WORK/leasedns.toml" >/dev/null || fail "the adapted config is invalid"
log "starting the packaged leasedns in $LAN_SRV"
ip netns exec "$LAN_SRV" "$BIN" run --config "$WORK/leasedns.toml" >"$WORK/leasedns.log" 2>&1 &
SERVER_PID=$!
if ! wait_log "$WORK/leasedns.log" "leasedns ready" 30 "$SERVER_PID"; then
    cat "$WORK/leasedns.log" >&2
    fail "the packaged leasedns did not become ready"
fi

C0=${LAN_CLIENTS[0]}
run_udhcpc "$C0" pkgclient || {
    cat "$WORK/$C0-udhcpc/log" "$WORK/leasedns.log" >&2
    fail "udhcpc got no lease"
}
ADDR=$(ns_addr "$C0")
log "udhcpc in $C0 got $ADDR"
ANSWER=$(ip netns exec "$C0" dig +short +tries=3 +time=2 @"$NET.1" pkgclient.lan A)
[[ $ANSWER == "$ADDR" ]] || fail "dig pkgclient.lan A said '$ANSWER', the lease is $ADDR"
log "dig pkgclient.lan A -> $ANSWER"
MODE=$(stat -c %a "$STATE/leases.journal")
[[ $MODE == 640 ]] || fail "the lease journal is mode $MODE, not 640"
log "lease journal $STATE/leases.journal mode $MODE"
echo "package test passed: $(basename "$DEB"), udhcpc got $ADDR, dig pkgclient.lan -> $ANSWER"
