#!/usr/bin/env bash
# python-deps.sh: makes sure Debian's python3-psycopg2 is installed for /usr/bin/python3, which runs the
# second-language worker (examples/python-worker) in test/workers. Idempotent: does nothing when the module
# imports already. Installs with hack/apt-install.sh (apt-get as root, or sudo when available).
set -euo pipefail
PYTHON=/usr/bin/python3

if [[ -x "$PYTHON" ]] && "$PYTHON" -c 'import psycopg2' >/dev/null 2>&1; then
	exit 0
fi
"$(dirname "$0")/apt-install.sh" python-deps python3 python3-psycopg2
"$PYTHON" -c 'import psycopg2' || { echo "python-deps: psycopg2 still does not import" >&2; exit 1; }
