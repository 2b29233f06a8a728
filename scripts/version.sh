#!/bin/sh
# Prints the version make build and make deb stamp catherd with, in a form
# Debian's package versions accept: the tag (v1.2.0 -> 1.2.0) when HEAD is
# tagged; else the last tag, or 0.0 when there is none, followed by
# +git<commit time>.<short hash> (a snapshot sorts after the tag it
# follows, and later snapshots after earlier ones); +dirty when the tree
# has uncommitted changes.
set -eu
cd "$(dirname "$0")/.."
if ! git rev-parse --git-dir >/dev/null 2>&1; then
	echo "0.0~unknown"
	exit 0
fi
dirty=""
git diff --quiet HEAD -- 2>/dev/null || dirty="+dirty"
if tag=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null); then
	echo "${tag#v}$dirty"
	exit 0
fi
base=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null || echo v0.0)
when=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S)
echo "${base#v}+git$when.$(git rev-parse --short=12 HEAD)$dirty"
