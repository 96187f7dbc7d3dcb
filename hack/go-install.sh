#!/usr/bin/env bash
# go-install.sh TARGET PACKAGE VERSION: installs a Go tool at a pinned version as the file TARGET (a versioned
# name in the shared cache), atomically, so concurrent callers and interrupted runs never leave a broken binary.
set -euo pipefail
target=$1 package=$2 version=$3
[[ -x "$target" ]] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "installing ${package}@${version}" >&2
GOBIN="$tmp" GOTOOLCHAIN=local go install "${package}@${version}"
mkdir -p "$(dirname "$target")"
mv -f "$tmp/$(basename "${package%/v[0-9]*}")" "$target"
