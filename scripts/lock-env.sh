#!/usr/bin/env bash
# Writes requirements/lock-py<X.Y>-<os>-<machine>.txt: every package setup-env.sh installs, at the newest
# release pip takes today, built in a fresh virtual environment (minutes, a network). Run the test suite on
# it (VBMD_VENV=<the folder printed> bash scripts/test.sh) before committing the new lock.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
work="$(mktemp -d /tmp/vbmd-lock-XXXXXX)"
VBMD_UNLOCKED=1 VBMD_VENV="$work/venv" PYTHON="$PYTHON" bash scripts/setup-env.sh
lock="requirements/lock-py$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-$(uname -s | tr '[:upper:]' '[:lower:]')-$(uname -m).txt"
mkdir -p requirements
tmp="$lock.tmp.$$"
{
  echo "# The versions scripts/setup-env.sh installs on $(uname -s) $(uname -m) with Python $("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')."
  echo "# Made by scripts/lock-env.sh on $(date -u +%Y-%m-%d) (pip freeze of a fresh environment); VBMD_UNLOCKED=1 ignores it."
  "$work/venv/bin/python" -m pip freeze --exclude-editable
} > "$tmp"
mv "$tmp" "$lock"
echo "lock-env: wrote $lock; test it with VBMD_VENV=$work/venv bash scripts/test.sh" >&2
