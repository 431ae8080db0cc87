"""Scanco ISQ scans and GOBJ contours, through aimio-py (with header checks first)."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import VbmdError
from .aim import read_head
from ..scan import IDENTITY_DIRECTION, UNIT_NATIVE, Calibration, Scan

ISQ_MAGIC = b"CTDATA-HEADER_V1"


def validate_isq_header(path: Path) -> dict:
    size, head = read_head(path, 512, "an ISQ")
    if len(head) < 512 or not head.startswith(ISQ_MAGIC):
        raise VbmdError("not an ISQ file (no CTDATA-HEADER_V1 header)", path)
    data_type = struct.unpack_from("<i", head, 16)[0]
    dim_p = struct.unpack_from("<3i", head, 44)
    dim_um = struct.unpack_from("<3i", head, 56)
    data_offset_blocks = struct.unpack_from("<i", head, 508)[0]
    if data_type != 3:
        raise VbmdError(f"ISQ data type {data_type} is not the int16 scans this reader supports", path)
    if any(d <= 0 for d in dim_p) or any(d <= 0 for d in dim_um):
        raise VbmdError(f"ISQ dimensions {dim_p} / {dim_um} um are not all positive", path)
    if data_offset_blocks < 0:
        raise VbmdError("ISQ data offset is negative: file is corrupt", path)
    need = (data_offset_blocks + 1) * 512 + 2 * int(np.prod(dim_p, dtype=np.int64))
    if need > size:
        raise VbmdError(f"truncated: dimensions {dim_p} need {need} bytes but the file has {size}", path)
    return {"dimensions_xyz": dim_p, "dimensions_um": dim_um}


def read_isq(path: str | Path) -> Scan:
    import py_aimio

    path = Path(path)
    validate_isq_header(path)
    try:
        array, meta = py_aimio.read_isq(str(path))
    except Exception as exc:
        raise VbmdError(f"cannot read ISQ file: {exc}", path) from None
    spacing_xyz = tuple(float(s) for s in meta["spacing"])
    calibration = None
    mu_scaling = meta.get("mu_scaling")
    if meta.get("rescale_slope") and mu_scaling and float(mu_scaling) > 0:
        # aimio gives density = native * rescale_slope + rescale_intercept
        calibration = Calibration(
            density_slope=float(meta["rescale_slope"]) * float(mu_scaling),
            density_intercept=float(meta.get("rescale_intercept", 0.0)),
            mu_scaling=float(mu_scaling),
            mu_water=float(meta["mu_water"]) if meta.get("mu_water") else None,
        )
    header = {"format": "isq", **{k: v for k, v in meta.items() if isinstance(v, (int, float, str, tuple))}}
    return Scan(
        data=np.asarray(array),
        spacing=spacing_xyz[::-1],
        origin=tuple(float(o) for o in meta.get("origin", (0, 0, 0)))[::-1],
        direction=IDENTITY_DIRECTION,
        calibration=calibration,
        unit=UNIT_NATIVE,
        kind="image",
        header=header,
        source=str(path),
    )


def read_gobj(path: str | Path) -> Scan:
    """A GOBJ contour rasterised to a mask on the grid of the contour's own bounding box.

    Its origin is in the scanner's voxel coordinates, like an AIM's, so ``measure.align_mask``
    places it on the scan it was drawn on.
    """
    import py_aimio

    path = Path(path)
    _, magic = read_head(path, 16, "a GOBJ")
    if not magic.startswith(ISQ_MAGIC):
        raise VbmdError("not a GOBJ file (no CTDATA-HEADER_V1 header)", path)
    try:
        array, meta = py_aimio.read_gobj(str(path), value=1, crop="tight")
    except Exception as exc:
        raise VbmdError(f"cannot read GOBJ contour: {exc}", path) from None
    spacing_xyz = tuple(float(s) for s in meta["spacing"])
    return Scan(
        data=(np.asarray(array) != 0).astype(np.uint8),
        spacing=spacing_xyz[::-1],
        origin=tuple(float(o) for o in meta["origin"])[::-1],
        kind="mask",
        header={"format": "gobj", "position": tuple(meta.get("position", (0, 0, 0)))},
        source=str(path),
    )
