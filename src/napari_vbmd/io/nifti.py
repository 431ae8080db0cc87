"""NIfTI through nibabel. Arrays are stored (x, y, z) on disk and handled (z, y, x) here.

The affine's translation and rotation become origin and direction; NIfTI has no density
calibration, so a scan read from NIfTI has unknown units unless this project wrote it (then the
description says "napari-vbmd units=...").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..errors import VbmdError, one_line, quiet_logs
from ..scan import UNIT_DENSITY, UNIT_UNKNOWN, UNITS, Scan
from .aim import read_head

#: the most voxel bytes a NIfTI header may declare (a gzip bomb must not take the machine's memory)
MAX_BYTES = 16 * 2**30

_DESCRIP_PREFIX = "napari-vbmd units="


def _unstated_voxel_size(path: Path) -> str | None:
    """Why the header states no voxel size (nibabel silently reads a zero pixdim as 1 mm), or None.

    The voxel size comes from the sform when its code is set, else from pixdim[1:4]."""
    import gzip
    import io

    import nibabel as nib

    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read(540)
        sizeof = int.from_bytes(raw[:4], "little")
        if sizeof not in (348, 540):
            sizeof = int.from_bytes(raw[:4], "big")
        klass = nib.Nifti2Header if sizeof == 540 else nib.Nifti1Header
        with quiet_logs("nibabel", "nibabel.global"):
            header = klass.from_fileobj(io.BytesIO(raw + bytes(4)), check=False)
        if int(header["sform_code"]) > 0:
            return None
        zooms = np.asarray(header["pixdim"][1:4], dtype=float)
    except Exception:  # nib.load read it; this second look is only for the voxel size
        return None
    if np.all(np.isfinite(zooms)) and np.all(zooms != 0):
        return None
    return f"its header's voxel size (pixdim) is {', '.join(f'{z:g}' for z in zooms)}"


def _description(header) -> tuple[str, str]:
    """(the header's description, what this project stated in it: "mask", a unit, or "")."""
    descrip = header["descrip"].tobytes().split(b"\0", 1)[0].decode("ascii", "ignore")
    stated = (descrip[len(_DESCRIP_PREFIX):].split() or [""])[0] if descrip.startswith(_DESCRIP_PREFIX) else ""
    return descrip, stated


def nifti_mask_reason(path: str | Path) -> str | None:
    """Why a NIfTI file holds a mask, from its header alone (written as a mask by this project, or
    one-byte voxels); None for a greyscale scan or a header nibabel cannot read."""
    try:
        import nibabel as nib

        with quiet_logs("nibabel", "nibabel.global"):
            header = nib.load(str(path)).header
        stated = _description(header)[1]
        dtype = header.get_data_dtype()
    except Exception:
        return None
    if stated == "mask":
        return "mask (NIfTI written as a mask)"
    if dtype.kind in "bu" and dtype.itemsize == 1:
        return f"mask (NIfTI of type {dtype})"
    return None


def read_nifti(path: str | Path, as_mask: bool | None = None) -> Scan:
    import nibabel as nib

    path = Path(path)
    read_head(path, 0, "a NIfTI")  # a folder, a FIFO, an unreadable or empty file: one line
    try:
        with quiet_logs("nibabel", "nibabel.global"):  # its header "fixes" (a zero voxel size set to 1) are judged below instead
            img = nib.load(str(path))
        header = img.header
        shape = img.shape
    except Exception as exc:
        raise VbmdError(f"not a readable NIfTI file ({one_line(exc)})", path) from None
    spacing_note = _unstated_voxel_size(path)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        extra = f" ({' x '.join(map(str, shape[3:]))} values per voxel)" if len(shape) > 3 else ""
        raise VbmdError(f"NIfTI image is {len(shape)}-D{extra}; a 3-D greyscale scan is needed", path)
    dtype = np.dtype(header.get_data_dtype())
    if dtype.kind not in "biuf" or dtype.fields:
        raise VbmdError(f"NIfTI voxels of type {dtype} are not greyscale numbers", path)
    n_bytes = int(np.prod(shape, dtype=np.float64)) * max(dtype.itemsize, 4)
    if n_bytes > MAX_BYTES:
        raise VbmdError(f"NIfTI declares {n_bytes / 1e9:.1f} GB of voxels, more than this reader accepts", path)
    expected = int(header.get_data_offset()) + int(np.prod(shape)) * dtype.itemsize
    if not str(path).endswith(".gz") and path.stat().st_size < expected:
        raise VbmdError(f"truncated: header promises {expected} bytes but the file has {path.stat().st_size}", path)
    try:
        with np.errstate(all="ignore"):
            data = np.asanyarray(img.dataobj).reshape(shape)
    except MemoryError:
        raise VbmdError("not enough memory to read this NIfTI file", path) from None
    except Exception as exc:
        raise VbmdError(f"cannot read NIfTI voxels ({one_line(exc)})", path) from None
    affine = np.array(img.affine, dtype=float)
    space_unit = header.get_xyzt_units()[0]
    to_mm = {"meter": 1000.0, "mm": 1.0, "micron": 1e-3}.get(space_unit, 1.0)  # unknown: NIfTI's usual mm
    affine[:3, :] *= to_mm
    if not np.all(np.isfinite(affine)):
        raise VbmdError("NIfTI affine (voxel size, orientation, origin) holds non-finite numbers", path)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    if np.any(zooms <= 0) or not np.all(np.isfinite(zooms)):
        raise VbmdError("NIfTI affine has a zero voxel size", path)
    axes = affine[:3, :3] / zooms
    if not np.allclose(axes.T @ axes, np.eye(3), atol=1e-3):
        raise VbmdError("NIfTI affine's axes are not at right angles (sheared or degenerate orientation)", path)
    direction_xyz = affine[:3, :3] / zooms
    descrip, stated = _description(header)
    unit = stated if stated in UNITS else UNIT_UNKNOWN
    kind = "mask" if stated == "mask" else "image"
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
        header={"format": "nifti", "descrip": descrip, "space_unit": space_unit,
                **({"spacing_known": False, "spacing_note": spacing_note} if spacing_note else {})},
        source=str(path),
    )


def write_nifti(path: str | Path, scan: Scan, protect=(), token: str | None = None) -> Path:
    """Write a scan or mask; ``token`` (at most 24 characters) goes into the header's aux_file, so
    that a copy differs byte for byte from any other writing of the same voxels."""
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
    if token is not None:
        img.header["aux_file"] = token.encode("ascii")[:23]
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    with atomic_path(path, protect=protect) as tmp:
        nib.save(img, str(tmp))
    return path
