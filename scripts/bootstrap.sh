#!/usr/bin/env bash
# Create .venv and install the pinned dependencies (requirements.lock) and this project, once per lock change.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PYTHON="$candidate"; break
    fi
  done
fi
[ -n "$PYTHON" ] || { echo "bootstrap: Python 3.11 or newer is needed" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.ennu-installed
want="$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "bootstrap: installing pinned dependencies"
.venv/bin/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
# Bytecode compiled once here: with PYTHONDONTWRITEBYTECODE set (common in containers) every process would
# otherwise compile Prefect, Great Expectations and pandas again at import (about 7 CPU-s each).
.venv/bin/uv pip install --quiet --compile-bytecode --python .venv/bin/python -r requirements.lock
.venv/bin/uv pip install --quiet --python .venv/bin/python --no-deps -e .
echo "$want" > "$stamp"
