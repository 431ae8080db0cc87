"""Reading and writing scans and masks: Scanco AIM/ISQ/GOBJ, DICOM, NIfTI and TIFF.

``read_scan`` and ``read_mask`` detect the format from the file's content (and its name where the
content cannot tell), and return a :class:`~napari_vbmd.scan.Scan`. Writers choose the format by
extension, write atomically and refuse to overwrite the files in ``protect``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .._atomic import non_regular_reason
from ..errors import VbmdError
from ..naming import strip_vms_version
from ..scan import Scan, align_mask
from .aim import read_aim, validate_aim_header, write_aim
from .dicom import is_dicom_file, read_dicom_series
from .nifti import nifti_mask_reason, read_nifti, write_nifti
from .scanco_other import ISQ_MAGIC, read_gobj, read_isq
from .tiff import read_tiff, write_tiff

__all__ = [
    "detect_format",
    "read_mask",
    "read_scan",
    "write_image",
    "write_mask",
    "mask_reason",
]

#: AIM data types of greyscale scans; char and binary AIMs hold masks
GREYSCALE_AIM_TYPES = ("int16", "float32")


def detect_format(path: str | Path) -> str:
    """One of "aim", "isq", "gobj", "dicom", "nifti", "tiff"; or VbmdError saying why not."""
    path = Path(path)
    if not path.exists():
        raise VbmdError("no such file or folder", path)
    if path.is_dir():
        try:
            files = [p for p in sorted(path.iterdir()) if p.is_file()]
        except OSError as exc:
            raise VbmdError(f"cannot list the folder ({exc.strerror})", path) from None
        if not files:
            raise VbmdError("folder is empty", path)
        if any(is_dicom_file(p) for p in files[:50]):
            return "dicom"
        raise VbmdError("folder holds no DICOM series (and a folder can only be a DICOM series)", path)
    reason = non_regular_reason(path)
    if reason:  # a FIFO would block the open below forever; a device could be endless
        raise VbmdError(reason, path)
    name = strip_vms_version(path.name).lower()
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        raise VbmdError(f"cannot read file ({exc.strerror})", path) from None
    if not head:
        raise VbmdError("file is empty", path)
    if head.startswith(ISQ_MAGIC):
        # ISQ scans and GOBJ contours share the CTDATA header; the name tells them apart.
        return "gobj" if name.endswith(".gobj") else "isq"
    if head.startswith(b"AIMDATA_V030"):
        return "aim"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:2] == b"\x1f\x8b" and name.endswith(".nii.gz"):
        return "nifti"
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return "nifti"
    if len(head) >= 4 and int.from_bytes(head[:4], "little") in (348, 540):
        if name.endswith(".nii"):
            return "nifti"
    if is_dicom_file(path):
        return "dicom"
    for ext, label in ((".gobj", "GOBJ"), (".isq", "ISQ")):
        if name.endswith(ext):
            raise VbmdError(f"not a {label} file (no CTDATA-HEADER_V1 header)", path)
    if name.endswith(".aim") or int.from_bytes(head[:4], "little", signed=True) in (16, 20):
        return "aim"
    raise VbmdError("unrecognised file format (expected AIM, ISQ, GOBJ, DICOM, NIfTI or TIFF)", path)


def mask_reason(path: str | Path, fmt: str) -> str | None:
    """Why a file of format ``fmt`` holds a mask rather than a greyscale scan, from its header only
    (None: a greyscale scan, another format, or a header too broken to tell: reading it will say)."""
    if fmt == "aim":
        try:
            header = validate_aim_header(path)
        except VbmdError:
            return None
        type_name = str(header.get("type_name", ""))
        return None if type_name in GREYSCALE_AIM_TYPES else f"mask (AIM of type {type_name})"
    if fmt == "nifti":
        return nifti_mask_reason(path)
    return None


def read_scan(path: str | Path, like: Scan | None = None, as_mask: bool | None = None) -> Scan:
    """Read any supported scan or mask. Masks (binary AIMs, GOBJs) come back with kind "mask".

    With ``like``, a mask is placed on that scan's grid (using both files' geometry).
    """
    fmt = detect_format(path)
    if fmt == "aim":
        scan = read_aim(path)
    elif fmt == "isq":
        scan = read_isq(path)
    elif fmt == "gobj":
        scan = read_gobj(path)
    elif fmt == "dicom":
        scan = read_dicom_series(path)
    elif fmt == "nifti":
        scan = read_nifti(path)
    else:
        scan = read_tiff(path)
    if as_mask and scan.kind != "mask":
        scan = _as_mask(scan)
    if like is not None and scan.kind == "mask":
        scan = like.with_data(
            align_mask(scan, like).astype("uint8"),
            kind="mask",
            unit="unknown",
            calibration=None,
            source=scan.source,
            header={**scan.header, "aligned_to": like.source},
        )
    return scan


def _as_mask(scan: Scan) -> Scan:
    """A file of two values (0 and anything) is a mask; a greyscale scan is refused as one."""
    data = scan.data
    lo = data.min()
    others = data[data != lo]
    if others.size and np.any(others != others.flat[0]):
        raise VbmdError("is a greyscale image, not a mask (it holds more than two values)", scan.source)
    if others.size and lo != 0 and others.flat[0] != 0:
        raise VbmdError("holds two values, neither of them 0: not a mask", scan.source)
    return scan.with_data((data != 0).astype(np.uint8), kind="mask", unit="unknown")


def read_mask(path: str | Path, like: Scan | None = None) -> Scan:
    """Read a mask (any voxel > 0 is inside); aligned onto ``like``'s grid when given."""
    return read_scan(path, like=like, as_mask=True)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _require_known_spacing(scan: Scan, path: Path) -> None:
    if not scan.spacing_known:  # the file would state the 1 mm placeholder as if it were true
        raise VbmdError("the voxel size is unknown; give it (--spacing Z Y X) before writing", path)


def write_mask(path: str | Path, mask: Scan, parent: Scan | None = None, protect=()) -> Path:
    """Write a mask: .aim (char 0/127 with the parent's processing log), .nii/.nii.gz or .tif."""
    path = Path(path)
    if mask.kind != "mask":
        mask = mask.with_data((mask.data != 0).astype("uint8"), kind="mask", unit="unknown")
    if not mask.data.any():
        raise VbmdError("refusing to write an empty mask", path)
    _require_known_spacing(mask, path)
    protect = tuple(protect) + tuple(p for p in ((parent.source if parent else None), mask.source) if p)
    suffix = _suffix(path)
    if suffix == ".aim":
        return write_aim(path, mask, parent=parent, protect=protect)
    if suffix in (".nii", ".nii.gz"):
        return write_nifti(path, mask, protect=protect)
    if suffix in (".tif", ".tiff"):
        return write_tiff(path, mask, protect=protect)
    raise VbmdError(f"cannot write a mask as '{suffix or path.name}'; use .aim, .nii.gz or .tif", path)


def write_image(path: str | Path, scan: Scan, protect=()) -> Path:
    """Write a greyscale scan: .aim (native int16 with calibration, or float densities) or NIfTI."""
    path = Path(path)
    _require_known_spacing(scan, path)
    protect = tuple(protect) + ((scan.source,) if scan.source else ())
    suffix = _suffix(path)
    if suffix == ".aim":
        return write_aim(path, scan, protect=protect)
    if suffix in (".nii", ".nii.gz"):
        return write_nifti(path, scan, protect=protect)
    if suffix in (".tif", ".tiff"):
        return write_tiff(path, scan, protect=protect)
    raise VbmdError(f"cannot write a scan as '{suffix or path.name}'; use .aim or .nii.gz", path)
