"""napari reader: AIM, ISQ, GOBJ, DICOM folders, NIfTI and TIFF, with geometry and calibration."""
from __future__ import annotations

from pathlib import Path

from .errors import VbmdError


def get_reader(path):
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    from .io import detect_format

    try:
        detect_format(path)
    except VbmdError:
        return None  # not ours: let other readers try
    return read_layers


def read_layers(path):
    from .io import read_scan
    from .layers import scan_to_layer_data

    if isinstance(path, list):
        path = path[0]
    try:
        scan = read_scan(path)
    except VbmdError as exc:
        _notify(str(exc))
        return []
    return [scan_to_layer_data(scan, name=Path(str(path)).name if scan.kind == "mask" else None)]


def _notify(message: str) -> None:
    try:
        from napari.utils.notifications import show_error

        show_error(message)
    except Exception:  # pragma: no cover - napari absent
        pass
