"""NIfTI through nibabel. Arrays are stored (x, y, z) on disk and handled (z, y, x) here.

The affine's translation and rotation become origin and direction; NIfTI has no density
calibration, so a scan read from NIfTI has unknown units unless this project wrote it (then the
description says "napari-vbmd units=...").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..errors import VbmdError
from ..scan import UNIT_DENSITY, UNIT_UNKNOWN, UNITS, Scan

_DESCRIP_PREFIX = "napari-vbmd units="


def read_nifti(path: str | Path, as_mask: bool | None = None) -> Scan:
    import nibabel as nib

    path = Path(path)
    if path.is_dir():
        raise VbmdError("is a folder, not a NIfTI file", path)
    if path.stat().st_size == 0:
        raise VbmdError("file is empty", path)
    try:
        img = nib.load(str(path))
        header = img.header
        shape = img.shape
    except Exception as exc:
        raise VbmdError(f"not a readable NIfTI file ({exc})", path) from None
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise VbmdError(f"NIfTI image is {len(shape)}-D; a 3-D scan is needed", path)
    expected = int(header.get_data_offset()) + int(np.prod(shape)) * np.dtype(header.get_data_dtype()).itemsize
    if not str(path).endswith(".gz") and path.stat().st_size < expected:
        raise VbmdError(f"truncated: header promises {expected} bytes but the file has {path.stat().st_size}", path)
    try:
        data = np.asanyarray(img.dataobj).reshape(shape)
    except Exception as exc:
        raise VbmdError(f"cannot read NIfTI voxels ({exc})", path) from None
    affine = img.affine
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    if np.any(zooms <= 0):
        raise VbmdError("NIfTI affine has a zero voxel size", path)
    direction_xyz = affine[:3, :3] / zooms
    descrip = header["descrip"].tobytes().split(b"\0", 1)[0].decode("ascii", "ignore")
    unit = UNIT_UNKNOWN
    kind = "image"
    if descrip.startswith(_DESCRIP_PREFIX):
        stated = descrip[len(_DESCRIP_PREFIX):].split()[0]
        if stated == "mask":
            kind = "mask"
        elif stated in UNITS:
            unit = stated
    if as_mask is not None:
        kind = "mask" if as_mask else "image"
    array = np.ascontiguousarray(np.transpose(data, (2, 1, 0)))
    if kind == "mask":
        array = (array != 0).astype(np.uint8)
    return Scan(
        data=array,
        spacing=tuple(float(z) for z in zooms[::-1]),
        origin=tuple(float(t) for t in affine[:3, 3][::-1]),
        direction=tuple(direction_xyz.flatten()),
        unit=unit,
        kind=kind,
        header={"format": "nifti", "descrip": descrip},
        source=str(path),
    )


def write_nifti(path: str | Path, scan: Scan, protect=()) -> Path:
    import nibabel as nib

    path = Path(path)
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        raise VbmdError("a NIfTI file name must end in .nii or .nii.gz", path)
    direction = np.array(scan.direction, dtype=float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.array(scan.spacing[::-1])[None, :]
    affine[:3, 3] = scan.origin[::-1]
    if scan.kind == "mask":
        data = (np.asarray(scan.data) != 0).astype(np.uint8)
        descrip = _DESCRIP_PREFIX + "mask"
    elif scan.unit == UNIT_DENSITY or (scan.calibration is not None and scan.unit != UNIT_UNKNOWN):
        data = scan.density().astype(np.float32)
        descrip = _DESCRIP_PREFIX + UNIT_DENSITY
    else:
        data = np.asarray(scan.data)
        descrip = _DESCRIP_PREFIX + scan.unit
    img = nib.Nifti1Image(np.transpose(data, (2, 1, 0)), affine)
    img.header["descrip"] = descrip.encode("ascii")[:79]
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    with atomic_path(path, protect=protect) as tmp:
        nib.save(img, str(tmp))
    return path
