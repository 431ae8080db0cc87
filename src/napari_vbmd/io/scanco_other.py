"""Scanco ISQ scans (through aimio-py, with the header checked and read here first).

An ISQ header states the field of view in micrometres (``dimensions_um``) beside the matrix
(``dimensions_p``): the voxel size in mm is ``dimensions_um / dimensions_p / 1000``. The raw scan
has no position of its own, so its origin is (0, 0, 0): the voxel coordinates an AIM cut from it
(``position``) or a contour drawn on it count from there, as ``scan.py``'s convention has it.

The density calibration sits in the extended header (a "Calibration" block listed in the header
directory, as ITK's ScancoImageIO walks it). It is applied the way aimio-py applies it, density =
native * rescale_slope + rescale_intercept (the calibrated fixture in ../shared/data/scanco-isq:
native 0 and 1 give 3 and 5 mg HA/cm3). ITK's reader divides rescale_slope by mu_scaling instead;
a calibration that gives densities no bone or phantom has (|density| > 20,000 mg HA/cm3 over the
scan's values) is therefore not trusted: the scan is read without one and ``vbmd info`` says why.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import VbmdError, one_line
from ..scan import IDENTITY_DIRECTION, UNIT_NATIVE, Calibration, Scan
from .aim import read_head

ISQ_MAGIC = b"CTDATA-HEADER_V1"
#: densities beyond this (mg HA/cm3) are none that bone, phantoms or metal implants give
PLAUSIBLE_DENSITY = 20_000.0


def _scanco_double(raw: bytes) -> float:
    """A VMS D-float as Scanco headers store it (16-bit words swapped, then a quarter)."""
    b = raw
    high = (b[0] << 16) | (b[1] << 24) | b[2] | (b[3] << 8)
    low = (b[4] << 16) | (b[5] << 24) | b[6] | (b[7] << 8)
    return struct.unpack("<d", struct.pack("<Q", (high << 32) | low))[0] * 0.25


def _extended_calibration(raw: bytes, header_size: int) -> dict | None:
    """The "Calibration" block of the extended header, found through the header directory."""
    if header_size < 2048 or len(raw) < header_size:
        return None
    at, skip = 512, 1
    if raw[at + 8: at + 24] == b"MultiHeader     ":
        at, skip = at + 512, skip + 1
    block = None
    for i in range(4):
        entry = at + i * 128
        if entry + 28 > header_size:
            break
        n_blocks = struct.unpack_from("<i", raw, entry + 24)[0]
        if n_blocks < 0 or (1 + skip + n_blocks) * 512 > header_size:
            break
        if raw[entry + 8: entry + 24] == b"Calibration     ":
            block = ((1 + skip) * 512, n_blocks * 512)
        skip += n_blocks
    if block is None or block[1] < 1024 or block[0] + 696 > header_size:
        return None
    start = block[0]
    return {
        "rescale_type": struct.unpack_from("<i", raw, start + 632)[0],
        "rescale_units": raw[start + 648: start + 664].split(b"\0", 1)[0].decode("ascii", "replace").strip(),
        "rescale_slope": _scanco_double(raw[start + 664: start + 672]),
        "rescale_intercept": _scanco_double(raw[start + 672: start + 680]),
        "mu_water": _scanco_double(raw[start + 688: start + 696]),
    }


def validate_isq_header(path: Path) -> dict:
    """Check an ISQ header against the file's size; return its geometry, identity and calibration."""
    path = Path(path)
    size, head = read_head(path, 512, "an ISQ")
    if len(head) < 512 or not head.startswith(ISQ_MAGIC):
        raise VbmdError("not an ISQ file (no CTDATA-HEADER_V1 header)", path)
    data_type = struct.unpack_from("<i", head, 16)[0]
    patient_index = struct.unpack_from("<i", head, 28)[0]
    dim_p = struct.unpack_from("<3i", head, 44)
    dim_um = struct.unpack_from("<3i", head, 56)
    slice_1_pos_um = struct.unpack_from("<i", head, 76)[0]
    mu_scaling = struct.unpack_from("<i", head, 88)[0]
    measurement_index = struct.unpack_from("<i", head, 112)[0]
    name = head[128:168].split(b"\0", 1)[0].decode("latin-1").strip()
    data_offset_blocks = struct.unpack_from("<i", head, 508)[0]
    if data_type != 3:
        raise VbmdError(f"ISQ data type {data_type} is not the int16 scans this reader supports", path)
    if any(d <= 0 for d in dim_p) or any(d <= 0 for d in dim_um):
        raise VbmdError(f"ISQ dimensions {dim_p} / {dim_um} um are not all positive", path)
    if data_offset_blocks < 0:
        raise VbmdError("ISQ data offset is negative: file is corrupt", path)
    header_size = (data_offset_blocks + 1) * 512
    need = header_size + 2 * int(np.prod(dim_p, dtype=np.int64))
    if need > size:
        raise VbmdError(f"truncated: dimensions {dim_p} need {need} bytes but the file has {size}", path)
    n_bytes = struct.unpack_from("<i", head, 20)[0]
    if n_bytes != need:  # aimio-py allocates this many bytes first (2 GB for a hostile 2**31 - 1)
        raise VbmdError(f"ISQ header's byte count {n_bytes} disagrees with its dimensions and data offset "
                        f"({need} bytes): the file is corrupt", path)
    calibration = None
    if header_size >= 2048:
        with open(path, "rb") as fh:
            calibration = _extended_calibration(fh.read(header_size), header_size)
    return {
        "dimensions_xyz": dim_p,
        "dimensions_um": dim_um,
        "spacing_mm_xyz": tuple(u / p / 1000.0 for u, p in zip(dim_um, dim_p)),
        "header_size": header_size,
        "mu_scaling": mu_scaling,
        "slice_1_pos_um": slice_1_pos_um,
        "patient_index": patient_index,
        "measurement_index": measurement_index,
        "patient_name": name,
        "calibration": calibration,
    }


def _isq_calibration(facts: dict, meta: dict, data: np.ndarray, path: Path) -> tuple[Calibration | None, str]:
    """The calibration the header states (checked against aimio-py's reading), or None and why not."""
    ours = facts["calibration"]
    theirs = {k: meta.get(k) for k in ("rescale_slope", "rescale_intercept", "mu_water")}
    if ours is None:
        if theirs["rescale_slope"] is not None:
            return None, ("aimio-py found calibration-like bytes outside the header's calibration block; "
                          "not trusted: give --slope/--intercept")
        return None, "the ISQ has no calibration block: say what the values are (--slope/--intercept)"
    for key in theirs:
        if theirs[key] is not None and not np.isclose(float(theirs[key]), ours[key], rtol=1e-9, atol=0):
            return None, (f"the header's calibration block and aimio-py disagree on {key} ({ours[key]!r} vs "
                          f"{theirs[key]!r}); not trusted")
    slope, intercept, mu_water = ours["rescale_slope"], ours["rescale_intercept"], ours["mu_water"]
    mu_scaling = facts["mu_scaling"]
    try:
        if mu_scaling > 0:
            calibration = Calibration(density_slope=slope * mu_scaling, density_intercept=intercept,
                                      mu_scaling=float(mu_scaling),
                                      mu_water=mu_water if np.isfinite(mu_water) and mu_water > 0 else None)
        else:
            calibration = Calibration(density_slope=slope, density_intercept=intercept, mu_scaling=1.0)
    except VbmdError as exc:
        return None, f"the header's calibration is unusable ({exc.problem})"
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    extreme = max(abs(slope * lo + intercept), abs(slope * hi + intercept))
    if not np.isfinite(extreme) or extreme > PLAUSIBLE_DENSITY:
        return None, (f"the header's calibration (slope {slope:g} per stored value, intercept {intercept:g}) gives "
                      f"densities up to {extreme:.3g} mg HA/cm3 over this scan: not trusted; give --slope/--intercept")
    units = ours.get("rescale_units") or "mg HA/ccm"
    return calibration, f"from the ISQ's calibration block ({units}: density = native * {slope:g} + {intercept:g})"


def read_isq(path: str | Path) -> Scan:
    import py_aimio

    path = Path(path)
    facts = validate_isq_header(path)
    try:
        array, meta = py_aimio.read_isq(str(path))
    except MemoryError:
        raise VbmdError("not enough memory to read this ISQ file", path) from None
    except Exception as exc:
        raise VbmdError(f"cannot read ISQ file: {one_line(exc)}", path) from None
    array = np.asarray(array)
    expected_shape = tuple(facts["dimensions_xyz"][::-1])
    if array.shape != expected_shape:
        raise VbmdError(f"aimio-py read {array.shape} voxels where the header states {expected_shape}", path)
    spacing_xyz = facts["spacing_mm_xyz"]
    their_um = meta.get("spacing")
    if their_um is not None and not np.allclose(np.asarray(their_um, float) / 1000.0, spacing_xyz, rtol=1e-6):
        raise VbmdError(f"aimio-py's voxel size {tuple(their_um)} um differs from the header's "
                        f"{facts['dimensions_um']} um / {facts['dimensions_xyz']} voxels", path)
    calibration, note = _isq_calibration(facts, meta, array, path)
    header = {
        "format": "isq",
        "dimensions_p": tuple(facts["dimensions_xyz"]),
        "dimensions_um": tuple(facts["dimensions_um"]),
        "mu_scaling": facts["mu_scaling"],
        "slice_1_pos_um": facts["slice_1_pos_um"],
        "patient_index": facts["patient_index"],
        "measurement_index": facts["measurement_index"],
        "patient_name": facts["patient_name"],
        "position": (0, 0, 0),
        "calibration_note": note,
    }
    return Scan(
        data=array,
        spacing=tuple(spacing_xyz[::-1]),
        origin=(0.0, 0.0, 0.0),  # the raw scan's voxel (0, 0, 0); AIM positions count from it
        direction=IDENTITY_DIRECTION,
        calibration=calibration,
        unit=UNIT_NATIVE,
        kind="image",
        header=header,
        source=str(path),
    )


def read_gobj(path: str | Path) -> Scan:
    from .gobj import read_gobj as _read

    return _read(path)
