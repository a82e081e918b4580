#!/usr/bin/env bash
# Install what the tests need from Debian's packages (run as root on Debian 12 or later).
set -euo pipefail
# bind9: the primary that the outbound DDNS tests update (named). bind9-dnsutils: dig and
# nsupdate; ddclient (perl): DynDNS2 client; curl and openssl: DynDNS2 over HTTP and HTTPS.
pkgs=(iproute2 procps isc-dhcp-client busybox bind9-dnsutils dhcpcd-base dnsmasq-base tcpdump nmap isc-dhcp-relay kea-admin bind9 ddclient curl openssl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  # Keep packages from starting services on install.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
