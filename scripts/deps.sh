#!/usr/bin/env bash
# Installs the Debian packages a make target needs, and only those missing,
# so `make demo` and `make test` work on a fresh Debian 12 machine as root;
# for test, also h2spec, from the Go module proxy.
#   scripts/deps.sh test|demo|bench|bench-xdp|bench-idle
set -euo pipefail

case "${1:-}" in
  test)  want=(tomcat10 iproute2 curl clang llvm libbpf-dev ethtool util-linux chromium wrk systemd man-db keepalived nginx) ;;
  demo)  want=(tomcat10 iproute2 curl ethtool util-linux) ;;
  bench) want=(tomcat10 iproute2 curl nginx haproxy apache2 libapache2-mod-jk wrk keepalived) ;;
  bench-xdp) want=(iproute2 ethtool util-linux nftables) ;;
  bench-idle) want=(nginx haproxy) ;;
  *) echo "usage: $0 test|demo|bench|bench-xdp|bench-idle" >&2; exit 2 ;;
esac

if ! command -v go >/dev/null; then
  echo "deps: Go is not on PATH; catherd needs Go $(sed -n 's/^go //p' "$(dirname "$0")/../go.mod") or newer" >&2
  exit 1
fi

# h2spec, the HTTP/2 conformance suite that userspace/proxy's TestH2spec
# runs against catherd's TLS listener, at a pinned version, into go
# install's directory (where the test looks for it). It has no go.mod, so
# its own dependencies resolve to their latest versions when installed.
h2spec_version=v2.2.1+incompatible
if [ "$1" = test ]; then
  gobin="$(go env GOBIN)"
  [ -n "$gobin" ] || gobin="$(go env GOPATH | cut -d: -f1)/bin"
  have="$(go version -m "$gobin/h2spec" 2>/dev/null | awk '$1 == "mod" && $2 == "github.com/summerwind/h2spec" {print $3}' || true)"
  if [ "$have" != "$h2spec_version" ]; then
    echo "deps: installing h2spec $h2spec_version into $gobin"
    go install "github.com/summerwind/h2spec/cmd/h2spec@$h2spec_version"
  fi
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
