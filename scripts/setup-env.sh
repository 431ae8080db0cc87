#!/usr/bin/env bash
# Installs what napari-vbmd needs on a fresh Debian/Ubuntu machine with Python 3.11:
# system libraries for Qt and OpenGL, Xvfb for headless use, and a virtual environment in .venv
# with the package (editable), a Qt binding and the test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VBMD_VENV:-.venv}"

need_apt=()
command -v Xvfb >/dev/null 2>&1 || need_apt+=(xvfb)
for lib in libGL.so.1 libEGL.so.1 libxkbcommon-x11.so.0 libxcb-icccm.so.4 libxcb-image.so.0 \
           libxcb-keysyms.so.1 libxcb-randr.so.0 libxcb-render-util.so.0 libxcb-xinerama.so.0 \
           libxcb-shape.so.0 libxcb-cursor.so.0 libdbus-1.so.3 libfontconfig.so.1; do
  ldconfig -p 2>/dev/null | grep -q "$lib" || need_apt+=("$lib")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing system packages (Xvfb, Mesa GL, Qt's X11 libraries)" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    xvfb libgl1 libegl1 libgl1-mesa-dri libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 \
    libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 \
    libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1 >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch: pip takes the newest release the machine allows (2.14.1 with torchvision 0.29.1 here).
"$VENV/bin/python" -m pip install -q -e ".[qt,testing]"
echo "setup: environment ready in $VENV" >&2
