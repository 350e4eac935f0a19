#!/usr/bin/env bash
# Debian packages whose programs the integration tier runs for real on loopback ports, and the
# browser the e2e tier's UI test drives, and Pebble, the ACME test server its TLS test orders from.
set -euo pipefail
packages=(redis-server redis-tools prometheus prometheus-alertmanager prometheus-redis-exporter sqlite3 chromium pebble)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "[test-packages] installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Services must not start on install: the tests start their own instances on free ports.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
