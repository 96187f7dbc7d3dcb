#!/usr/bin/env bash
# browser-deps.sh: makes sure a headless Chromium is installed for the web UI's browser test (test/ui, driven with
# chromedp) and prints its path. Idempotent: installs nothing when a chromium (or chromium-browser, google-chrome)
# is already on PATH. Installs Debian's chromium with hack/apt-install.sh (apt-get as root, or sudo when
# available).
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

if find_browser; then
	exit 0
fi
"$(dirname "$0")/apt-install.sh" browser-deps chromium fonts-dejavu-core
find_browser || { echo "browser-deps: chromium is still not on PATH" >&2; exit 1; }
