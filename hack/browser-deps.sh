#!/usr/bin/env bash
# browser-deps.sh: makes sure a headless Chromium is installed for the web UI's browser test (test/ui, driven with
# chromedp) and prints its path on the last line. Idempotent: installs nothing when a chromium (or
# chromium-browser, google-chrome) is already on PATH. Installs Debian's chromium with apt-get (root, or sudo when
# available); runs 'apt-get update' only when the install fails without it (missing or stale package lists).
set -euo pipefail

find_browser() {
	local name
	for name in chromium chromium-browser google-chrome google-chrome-stable; do
		if command -v "$name" >/dev/null 2>&1; then
			command -v "$name"
			return 0
		fi
	done
	return 1
}

if path=$(find_browser); then
	echo "$path"
	exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
	sudo=()
elif command -v sudo >/dev/null 2>&1; then
	sudo=(sudo -n)
else
	echo "browser-deps: chromium is missing and this user cannot run apt-get; install it as root" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "browser-deps: installing chromium" >&2
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; then
	echo "browser-deps: install failed; updating the package lists and retrying" >&2
	"${sudo[@]}" apt-get update -qq >/dev/null
	"${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
find_browser || { echo "browser-deps: chromium is still not on PATH" >&2; exit 1; }
