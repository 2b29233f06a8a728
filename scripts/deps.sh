#!/usr/bin/env bash
# Installs the Debian packages a make target needs, and only those missing,
# so `make demo` and `make test` work on a fresh Debian 12 machine as root.
#   scripts/deps.sh test|demo|bench|bench-xdp|bench-idle
set -euo pipefail

case "${1:-}" in
  test)  want=(tomcat10 iproute2 curl clang llvm libbpf-dev ethtool util-linux chromium wrk systemd man-db) ;;
  demo)  want=(tomcat10 iproute2 curl ethtool util-linux) ;;
  bench) want=(tomcat10 iproute2 curl nginx haproxy apache2 libapache2-mod-jk wrk) ;;
  bench-xdp) want=(iproute2 ethtool util-linux nftables) ;;
  bench-idle) want=(nginx haproxy) ;;
  *) echo "usage: $0 test|demo|bench|bench-xdp|bench-idle" >&2; exit 2 ;;
esac

if ! command -v go >/dev/null; then
  echo "deps: Go is not on PATH; catherd needs Go $(sed -n 's/^go //p' "$(dirname "$0")/../go.mod") or newer" >&2
  exit 1
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing packages ${missing[*]}; run as root or install them" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Packaged services (nginx, apache2, tomcat10) must not start on install:
# the tests and benchmarks run their own instances on their own ports.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
