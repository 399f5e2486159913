#!/usr/bin/env bash
# Run the test suite: set-up, then pytest against SQLite, PostgreSQL, the Prefect harness and the sandbox.
# Arguments go to pytest: `scripts/test.sh -m "not e2e"` is the fast tier, `scripts/test.sh tests/test_x.py`
# one file.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PREFECT_SERVER_ANALYTICS_ENABLED=false GX_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
# loadgroup: a module's e2e tests stay on one worker (they share its server; tests/tiers.py).
exec .venv/bin/python -m pytest -n "${ENNU_TEST_WORKERS:-2}" --dist loadgroup "$@"
