"""TIFF stacks through tifffile, with spacing where the file has it.

Reads ImageJ hyperstacks (resolution tags + "spacing"/"unit") and the JSON description tifffile
writes; writes the latter with spacing and origin in mm, plus ImageJ-readable resolution tags.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..errors import VbmdError
from ..scan import UNIT_UNKNOWN, UNITS, Scan

_UNIT_TO_MM = {"mm": 1.0, "millimeter": 1.0, "um": 1e-3, "µm": 1e-3, "micron": 1e-3, "\\u00B5m": 1e-3, "cm": 10.0, "m": 1000.0, "nm": 1e-6}


def read_tiff(path: str | Path, as_mask: bool | None = None) -> Scan:
    import tifffile

    path = Path(path)
    if path.is_dir():
        raise VbmdError("is a folder, not a TIFF file", path)
    if path.stat().st_size == 0:
        raise VbmdError("file is empty", path)
    try:
        with tifffile.TiffFile(str(path)) as tif:
            data = tif.asarray()
            page = tif.pages[0]
            ij = tif.imagej_metadata or {}
            shaped = tif.shaped_metadata[0] if tif.shaped_metadata else {}
            tags = {t.name: t.value for t in page.tags.values()}
    except Exception as exc:
        raise VbmdError(f"not a readable TIFF file ({exc})", path) from None
    data = np.squeeze(data)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise VbmdError(f"TIFF holds {data.ndim}-D data; a 3-D stack (z, y, x) is needed", path)
    spacing = [1.0, 1.0, 1.0]
    origin = [0.0, 0.0, 0.0]
    spacing_known = False
    unit = UNIT_UNKNOWN
    kind = "image"
    if "spacing_mm" in shaped:
        spacing = [float(s) for s in shaped["spacing_mm"]]
        origin = [float(o) for o in shaped.get("origin_mm", origin)]
        spacing_known = True
        unit = shaped.get("unit", UNIT_UNKNOWN) if shaped.get("unit") in UNITS else UNIT_UNKNOWN
        kind = "mask" if shaped.get("kind") == "mask" else "image"
    else:
        scale = _UNIT_TO_MM.get(str(ij.get("unit", "")).strip(), None)
        for axis, tag in ((1, "YResolution"), (2, "XResolution")):
            res = tags.get(tag)
            if isinstance(res, tuple) and res[0] > 0 and scale is not None:
                spacing[axis] = res[1] / res[0] * scale
                spacing_known = True
        if "spacing" in ij and scale is not None:
            spacing[0] = float(ij["spacing"]) * scale
    if as_mask is not None:
        kind = "mask" if as_mask else "image"
    if kind == "mask":
        data = (data != 0).astype(np.uint8)
    return Scan(
        data=np.ascontiguousarray(data),
        spacing=tuple(spacing),
        origin=tuple(origin),
        unit=unit,
        kind=kind,
        header={"format": "tiff", "spacing_known": spacing_known},
        source=str(path),
    )


def write_tiff(path: str | Path, scan: Scan, protect=()) -> Path:
    import tifffile

    path = Path(path)
    if scan.kind == "mask":
        data = (np.asarray(scan.data) != 0).astype(np.uint8)
        unit = UNIT_UNKNOWN
    else:
        data = np.asarray(scan.data)
        unit = scan.unit
    metadata = {
        "spacing_mm": list(scan.spacing),
        "origin_mm": list(scan.origin),
        "unit": unit,
        "kind": scan.kind,
        "writer": "napari-vbmd",
    }
    with atomic_path(path, protect=protect) as tmp:
        tifffile.imwrite(
            str(tmp),
            data,
            metadata=metadata,
            resolution=(1.0 / scan.spacing[2], 1.0 / scan.spacing[1]),
            compression="zlib" if scan.kind == "mask" else None,
        )
    return path
