#!/usr/bin/env bash
# Start everything locally on embedded defaults (see README): set-up, then the launcher.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PREFECT_SERVER_ANALYTICS_ENABLED=false GX_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
exec .venv/bin/python -m devtools.launcher "$@"
