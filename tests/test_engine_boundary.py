"""The engine never imports napari or Qt: only widgets/, _reader, _writer and _sample_data may."""
import pkgutil
import subprocess
import sys

import napari_vbmd

FRONT_END = ("napari_vbmd.widgets", "napari_vbmd._reader", "napari_vbmd._writer", "napari_vbmd._sample_data")


def engine_modules():
    names = [m.name for m in pkgutil.walk_packages(napari_vbmd.__path__, "napari_vbmd.")]
    return sorted(n for n in names if not n.startswith(FRONT_END) and not n.endswith("__main__"))


def test_engine_and_cli_import_without_napari_or_qt():
    modules = engine_modules()
    assert "napari_vbmd.io.aim" in modules and "napari_vbmd.cli.segment" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'vispy'))\n"
        "print(' '.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"the engine imported GUI modules: {out}"
