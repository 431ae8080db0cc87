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
    data, kwargs, kind = scan_to_layer_data(scan, name=Path(str(path)).name if scan.kind == "mask" else None)
    if not scan.spacing_known:
        # shown at 1 mm per voxel so it can be looked at; measuring refuses until the spacing is given
        kwargs["name"] = f"{kwargs['name']} (voxel size unknown)"
        why = scan.header.get("spacing_note") or "the file does not state it"
        _notify(f"{path}: voxel size unknown ({why}); shown at 1 mm per voxel; measuring and segmenting need "
                "the spacing (Voxel size in the Segment & measure form, or vbmd with --spacing Z Y X)", warning=True)
    return [(data, kwargs, kind)]


def _notify(message: str, warning: bool = False) -> None:
    try:
        from napari.utils.notifications import show_error, show_warning

        (show_warning if warning else show_error)(message)
    except Exception:  # pragma: no cover - napari absent
        pass
