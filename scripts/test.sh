#!/usr/bin/env bash
# Installs everything and runs the whole test suite (GUI tests in a real napari viewer under Xvfb,
# started by pytest-xvfb). Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup-env.sh
VENV="${VBMD_VENV:-.venv}"
export PYTHONFAULTHANDLER=1
set +e
"$VENV/bin/python" -m pytest --durations=15 "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
