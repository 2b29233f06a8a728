#!/usr/bin/env bash
# Builds the Debian package of catherd with Debian's own dpkg-deb, into
# OUTDIR (default: the repository's root): what `make deb` runs.
#   scripts/deb/build.sh [OUTDIR]
#
# The package holds the binary (static: CGO off, so it depends on nothing),
# the systemd unit, /etc/default/catherd with every flag listed (a
# conffile), the man page catherd(1) and the bash completion, the last
# three generated from catherd's own flags (scripts/deb/gen). Installing it
# starts nothing: CATHERD_ARGS must name the backends first. Upgrading it
# while catherd runs hands over to the new binary (systemctl reload: no
# request dropped).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-.}
mkdir -p "$out"
out=$(cd "$out" && pwd)

version=${VERSION:-$(scripts/version.sh)}
revision=$(git rev-parse HEAD 2>/dev/null || true)
arch=$(dpkg --print-architecture)
goarch=$(go env GOARCH)
case "$arch" in
	amd64 | arm64) [ "$arch" = "$goarch" ] || { echo "deb: dpkg says $arch, go builds $goarch" >&2; exit 1; } ;;
	*) echo "deb: architecture $arch is not packaged" >&2; exit 1 ;;
esac

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/default" \
	"$root/usr/share/man/man1" "$root/usr/share/bash-completion/completions" "$root/usr/share/doc/catherd"

CGO_ENABLED=0 go build -trimpath -o "$root/usr/bin/catherd" \
	-ldflags "-X github.com/catherd/catherd/userspace/version.stamped=$version -X github.com/catherd/catherd/userspace/version.stampedRevision=$revision" \
	./cmd/catherd
go run ./scripts/deb/gen -bin "$root/usr/bin/catherd" -version "$version" \
	-man "$stage/catherd.1" -defaults "$root/etc/default/catherd"
gzip -9n -c "$stage/catherd.1" > "$root/usr/share/man/man1/catherd.1.gz"
"$root/usr/bin/catherd" completion bash > "$root/usr/share/bash-completion/completions/catherd"
sed 's#/usr/local/bin/catherd#/usr/bin/catherd#g' scripts/systemd/catherd.service > "$root/lib/systemd/system/catherd.service"
gzip -9n -c README.md > "$root/usr/share/doc/catherd/README.md.gz"
cp docs/*.md "$root/usr/share/doc/catherd/"

cat > "$root/DEBIAN/control" <<CONTROL
Package: catherd
Version: $version
Architecture: $arch
Maintainer: catherd developers <catherd@localhost>
Section: net
Priority: optional
Installed-Size: $(du -sk "$root" | cut -f1)
Homepage: https://github.com/catherd/catherd
Description: load balancer for Tomcat clusters
 catherd routes each session to the Tomcat node named by its jvmRoute,
 balances new sessions, and moves a session whose node fails to a node
 that holds its copy, from every catherd the same, and keeps it there.
 L4 services are steered in XDP by client address with direct server
 return. It follows the cluster's multicast membership, restarts without
 dropping a request, and exports Prometheus metrics.
CONTROL
echo /etc/default/catherd > "$root/DEBIAN/conffiles"

# Maintainer scripts: systemd is told about the unit; an upgrade while
# catherd runs hands over to the new binary; removal stops it (the XDP
# datapath's pins stay until catherd unload, as after any stop).
cat > "$root/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	if [ -n "$2" ] && systemctl is-active --quiet catherd; then
		systemctl reload catherd || echo "catherd: the reload onto the new version failed; the previous process serves on (journalctl -u catherd)" >&2
	fi
fi
exit 0
SCRIPT
cat > "$root/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	systemctl disable --now catherd || true
fi
exit 0
SCRIPT
cat > "$root/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
SCRIPT
chmod 755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

deb="$out/catherd_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
