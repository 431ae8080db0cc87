#!/usr/bin/env bash
# The main job on a fresh machine: install, make a synthetic HR-pQCT phantom, segment MC2 with
# the bundled phantom-trained model, measure vBMD, and show it in napari (or, with no display,
# save a screenshot and print the report). Output goes to demo-output/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup-env.sh
VENV="${VBMD_VENV:-.venv}"
if [ -n "${DISPLAY:-}" ]; then
  exec "$VENV/bin/vbmd" demo demo-output --show "$@"
else
  exec xvfb-run -a -s "-screen 0 1600x1000x24" "$VENV/bin/vbmd" demo demo-output "$@"
fi
