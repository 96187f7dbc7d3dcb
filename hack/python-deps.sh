#!/usr/bin/env bash
# python-deps.sh: makes sure Debian's python3-psycopg2 is installed for /usr/bin/python3, which runs the
# second-language worker (examples/python-worker) in test/workers. Idempotent: does nothing when the module
# imports already. Installs with apt-get (root, or sudo when available); runs 'apt-get update' only when the
# install fails without it (a machine whose package lists are missing or stale).
set -euo pipefail
PYTHON=/usr/bin/python3

if [[ -x "$PYTHON" ]] && "$PYTHON" -c 'import psycopg2' >/dev/null 2>&1; then
	exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
	sudo=()
elif command -v sudo >/dev/null 2>&1; then
	sudo=(sudo -n)
else
	echo "python-deps: python3-psycopg2 is missing and this user cannot run apt-get; install it as root" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "python-deps: installing python3-psycopg2" >&2
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends python3 python3-psycopg2 >/dev/null; then
	echo "python-deps: install failed; updating the package lists and retrying" >&2
	"${sudo[@]}" apt-get update -qq >/dev/null
	"${sudo[@]}" apt-get install -y -qq --no-install-recommends python3 python3-psycopg2 >/dev/null
fi
"$PYTHON" -c 'import psycopg2' || { echo "python-deps: psycopg2 still does not import" >&2; exit 1; }
