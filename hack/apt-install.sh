#!/usr/bin/env bash
# apt-install.sh NAME PACKAGE...: installs Debian packages for the hack/*-deps.sh scripts (NAME prefixes the
# messages), without recommended packages. As root, or through sudo when available; runs 'apt-get update' only
# when the install fails without it (a machine whose package lists are missing or stale).
set -euo pipefail
name=$1
shift

if [[ $(id -u) -eq 0 ]]; then
	sudo=()
elif command -v sudo >/dev/null 2>&1; then
	sudo=(sudo -n)
else
	echo "$name: $* missing and this user cannot run apt-get; install as root" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "$name: installing $*" >&2
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
	echo "$name: install failed; updating the package lists and retrying" >&2
	"${sudo[@]}" apt-get update -qq >/dev/null
	"${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
fi
