#!/usr/bin/env bash
# A stand-in for `leasedns run --config FILE`, to check bench.sh's leasedns code paths before the
# daemon exists: it reads the few keys bench.sh writes, prints the ready line, and becomes
# dnsmasq (same PID) serving the same subnet. Its figures are dnsmasq's, never leasedns's.
# Usage: bench.sh --leasedns-bin netns-scripts/bench-fake-leasedns.sh --servers leasedns,kea ...
set -euo pipefail
if [ "${1:-}" != run ] || [ "${2:-}" != --config ] || [ ! -f "${3:-}" ]; then
  echo "usage: $0 run --config FILE" >&2
  exit 2
fi
conf=$3
key() { sed -n "s/^$1 *= *\"\\([^\"]*\\)\".*/\\1/p" "$conf" | head -1; }
lease_file=$(key lease_file)
pool_start=$(key pool_start)
pool_end=$(key pool_end)
router=$(key router)
prefix=$(key network | cut -d/ -f2)
listen=$(sed -n 's/^listen *= *\["\([0-9.]*\):53"\].*/\1/p' "$conf" | head -1)
mask=$(python3 -c "import ipaddress,sys; print(ipaddress.ip_network('0.0.0.0/' + sys.argv[1]).netmask)" "$prefix")
dir=$(dirname "$lease_file")
# Not truly ready until dnsmasq binds, a few milliseconds after exec: the harness check only.
echo "fake leasedns ready (this is dnsmasq)" >&2
exec dnsmasq -k --conf-file=/dev/null --log-facility="$dir/fake.log" --pid-file="$dir/fake.pid" \
  --user=root --group=root --interface=vs0 --bind-interfaces --listen-address="$listen" \
  --no-resolv --no-hosts --no-ping --quiet-dhcp --dhcp-authoritative \
  --dhcp-range="$pool_start,$pool_end,$mask,1h" --dhcp-leasefile="$lease_file" \
  --dhcp-lease-max=300000 --domain=lan --dhcp-option=3,"$router"
