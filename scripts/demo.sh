#!/usr/bin/env bash
# README's "run it": from a clean clone to a downloaded, decoded video.
# Creates ./.venv if missing, installs dlstore into it, runs scripts/demo.py (which needs
# no internet: it makes its own sample stream and serves it on 127.0.0.1).
# The install needs a package index, or a wheelhouse via PIP_FIND_LINKS; if it fails
# and dlstore is already installed in the venv, the demo runs with that.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
if ! "$VENV/bin/python" -m pip install --quiet --editable .; then
    "$VENV/bin/python" -c "import dlstore" 2>/dev/null || {
        echo "demo.sh: installing dlstore into $VENV failed (see above)." >&2
        exit 1
    }
    echo "demo.sh: install failed; using the dlstore already in $VENV." >&2
fi
exec "$VENV/bin/python" scripts/demo.py "$@"
