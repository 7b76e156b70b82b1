#!/usr/bin/env bash
# Install dlstore and its test dependencies into ./.venv, then run the whole test suite.
# Needs python3 (3.10+) and, for the PostgreSQL half, a server on 127.0.0.1:5432
# (DLSTORE_TEST_PG_URL to use another); without one those tests skip, except under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet --editable '.[test]'
exec .venv/bin/python -m pytest "$@"
