#!/usr/bin/env bash
# Installs what napari-vbmd needs on a fresh Debian/Ubuntu machine with Python 3.11:
# system libraries for Qt and OpenGL, Xvfb for headless use, and a virtual environment in .venv
# with the package (editable), a Qt binding and the test tools. Safe to run again: when nothing is
# missing it needs neither root nor a network (the venv is reinstalled only when pyproject.toml or the
# lock file changed). Where requirements/ holds a lock file for this Python and platform (made by
# scripts/lock-env.sh), every package is installed at the version it names, so CI and a user's clone run
# what the tests last passed on; VBMD_UNLOCKED=1 takes the newest releases instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VBMD_VENV:-.venv}"

need_apt=()
command -v Xvfb >/dev/null 2>&1 || need_apt+=(xvfb)
# Read the linker cache once. `ldconfig -p | grep -q` under pipefail fails at random: grep -q exits at
# its first match, ldconfig then dies of SIGPIPE and the pipeline reports a missing library.
linker_cache="$(ldconfig -p 2>/dev/null || true)"
for lib in libGL.so.1 libEGL.so.1 libxkbcommon-x11.so.0 libxcb-icccm.so.4 libxcb-image.so.0 \
           libxcb-keysyms.so.1 libxcb-randr.so.0 libxcb-render-util.so.0 libxcb-xinerama.so.0 \
           libxcb-shape.so.0 libxcb-cursor.so.0 libdbus-1.so.3 libfontconfig.so.1; do
  grep -qF -- "$lib" <<<"$linker_cache" || need_apt+=("$lib")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: missing ${need_apt[*]}; installing system packages (Xvfb, Mesa GL, Qt's X11 libraries)" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "setup: error: not root and no sudo: install ${need_apt[*]} (see this script's apt-get line)" >&2
      exit 1
    fi
    SUDO="sudo"
  fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    xvfb libgl1 libegl1 libgl1-mesa-dri libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 \
    libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 \
    libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1 >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
lock="requirements/lock-py$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-$(uname -s | tr '[:upper:]' '[:lower:]')-$(uname -m).txt"
if [ "${VBMD_UNLOCKED:-0}" = "1" ] || [ ! -f "$lock" ]; then
  [ "${VBMD_UNLOCKED:-0}" = "1" ] || echo "setup: no $lock for this Python and platform: the newest releases" >&2
  lock=""
fi
# The venv is up to date when it was set up from this very pyproject.toml (and lock file) and still
# imports the package and the test tools: then nothing is downloaded.
stamp="$VENV/.vbmd-setup-stamp"
want="$(cat pyproject.toml ${lock:+"$lock"} | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && "$VENV/bin/python" -c "import napari_vbmd, pytest, pytestqt, pytest_xvfb" >/dev/null 2>&1; then
  echo "setup: environment up to date in $VENV" >&2
  exit 0
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch: pip takes the newest release the machine allows (2.14.1 with torchvision 0.29.1 here), or the lock's.
"$VENV/bin/python" -m pip install -q -e ".[qt,testing]" ${lock:+-c "$lock"}
echo "$want" > "$stamp"
echo "setup: environment ready in $VENV" >&2
