"""Scanco AIM files (v010/v011/v020/v030) through ``aimio-py``.

``aimio-py``'s C++ core trusts the header: it allocates what the block list and dimensions claim
before reading. A hostile or truncated file could therefore ask for gigabytes or crash the
process, which Python cannot catch. ``validate_aim_header`` checks the header in pure Python
first, so that nothing reaches the C++ reader that would allocate more than the file can hold.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import struct
from pathlib import Path

import numpy as np

from .._atomic import atomic_path, non_regular_reason
from ..errors import VbmdError, one_line
from ..scan import IDENTITY_DIRECTION, UNIT_DENSITY, UNIT_HU, UNIT_NATIVE, Calibration, Scan

V030_MAGIC = b"AIMDATA_V030   \0"

TYPE_CHAR = (1 << 16) + 1
TYPE_BINCMP = (21 << 16) + 1  # run-length compressed, two values (the scanner's masks)
TYPE_BIT8 = (6 << 16) + 1
TYPE_CHARCMP = (8 << 16) + 2
TYPE_SHORT = (2 << 16) + 2
TYPE_FLOAT = (4 << 16) + 4  # aimio-py 0.4 writes floats with this code
TYPE_NAMES = {
    TYPE_CHAR: "char",
    TYPE_BINCMP: "binary, run-length compressed",
    TYPE_BIT8: "bit-packed binary",
    TYPE_CHARCMP: "char, run-length compressed",
    TYPE_SHORT: "int16",
    TYPE_FLOAT: "float32",
}
_BYTES_PER_VOXEL = {TYPE_CHAR: 1, TYPE_SHORT: 2, TYPE_FLOAT: 4}
# A run-length byte encodes at most 255 voxels; bit8 packs 8 voxels a byte. So the voxels a
# compressed block can describe are bounded by its size; a header claiming more is lying.
_MAX_VOXELS_PER_COMPRESSED_BYTE = 256
# Header struct sizes of the versions aimio reads (see AimIO's D3FileImage0xx structs).
_STRUCT_SIZES = {224: 30, 140: 20, 96: 11, 92: 10}

MASK_VALUE = 127  # what the scanner's gobj_to_aim writes inside a contour


def validate_aim_header(path: str | Path) -> dict:
    """Check an AIM header against the file's size; return the basic facts or raise VbmdError."""
    path = Path(path)
    try:
        return _validate_aim_header(path)
    except struct.error:
        raise VbmdError("AIM header is truncated or corrupt", path) from None


def read_head(path: Path, n_bytes: int, kind: str) -> tuple[int, bytes]:
    """The file's size and its first ``n_bytes``; a folder, an unreadable or an empty file is
    refused in one line (``kind``: "an AIM", "an ISQ", ...)."""
    if path.is_dir():
        raise VbmdError(f"is a folder, not {kind} file", path)
    reason = non_regular_reason(path)
    if reason:
        raise VbmdError(reason, path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(n_bytes)
    except IsADirectoryError:
        raise VbmdError(f"is a folder, not {kind} file", path) from None
    except OSError as exc:
        raise VbmdError(f"cannot read file ({exc.strerror})", path) from None
    if size == 0:
        raise VbmdError("file is empty", path)
    return size, head


def _validate_aim_header(path: Path) -> dict:
    size, head = read_head(path, 4096, "an AIM")
    if len(head) < 24:
        raise VbmdError(f"too short for an AIM file ({size} bytes)", path)

    if head.startswith(V030_MAGIC[:15]):
        pre_size = struct.unpack_from("<q", head, 16)[0]
        if pre_size not in (32, 40):
            raise VbmdError(f"AIM v030 pre-header size {pre_size} is invalid: file is corrupt", path)
        n = pre_size // 8 - 1
        block_sizes = list(struct.unpack_from(f"<{n}q", head, 24))
        offset = 16 + pre_size
    else:
        pre_size = struct.unpack_from("<i", head, 0)[0]
        if pre_size not in (16, 20):
            raise VbmdError("not an AIM file (unrecognised pre-header)", path)
        n = pre_size // 4 - 1
        block_sizes = list(struct.unpack_from(f"<{n}i", head, 4))
        offset = pre_size
    if any(b < 0 for b in block_sizes):
        raise VbmdError("AIM header has a negative block size: file is corrupt", path)
    if len(block_sizes) < 3:
        raise VbmdError("AIM header lists too few blocks: file is corrupt", path)
    struct_size = block_sizes[0]
    version = _STRUCT_SIZES.get(struct_size)
    if version is None:
        raise VbmdError(f"AIM image header of {struct_size} bytes is of no known AIM version", path)
    total = offset + sum(block_sizes)
    if total > size:
        raise VbmdError(
            f"truncated or corrupt: header promises {total} bytes but the file has {size}", path
        )
    if offset + struct_size > len(head):
        raise VbmdError("AIM header is truncated", path)
    s = offset
    if version == 30:
        aim_type = struct.unpack_from("<i", head, s + 12)[0]
        pos = struct.unpack_from("<3q", head, s + 16)
        dim = struct.unpack_from("<3q", head, s + 40)
        off = struct.unpack_from("<3q", head, s + 64)
    elif version == 20:
        aim_type = struct.unpack_from("<i", head, s + 20)[0]
        pos = struct.unpack_from("<3i", head, s + 24)
        dim = struct.unpack_from("<3i", head, s + 36)
        off = struct.unpack_from("<3i", head, s + 48)
    else:  # v010 / v011: type, dim, off, subdim, pos
        aim_type = struct.unpack_from("<i", head, s + 16)[0]
        dim = struct.unpack_from("<3i", head, s + 20)
        off = struct.unpack_from("<3i", head, s + 32)
        pos = struct.unpack_from("<3i", head, s + 56)
    if aim_type not in TYPE_NAMES:
        raise VbmdError(f"unsupported AIM data type code {aim_type}", path)
    if any(d <= 0 for d in dim):
        raise VbmdError(f"AIM dimensions {tuple(dim)} are not all positive", path)
    if any(o < 0 or 2 * o > d for o, d in zip(off, dim)):
        raise VbmdError(f"AIM offset {tuple(off)} does not fit the dimensions {tuple(dim)}", path)
    n_voxels = int(dim[0]) * int(dim[1]) * int(dim[2])
    data_size = block_sizes[2]
    if aim_type in _BYTES_PER_VOXEL:
        need = n_voxels * _BYTES_PER_VOXEL[aim_type]
        if data_size != need:
            raise VbmdError(
                f"image data block is {data_size} bytes but dimensions {tuple(dim)} of "
                f"{TYPE_NAMES[aim_type]} need {need}: file is corrupt",
                path,
            )
    elif n_voxels > max(data_size, 1) * _MAX_VOXELS_PER_COMPRESSED_BYTE:
        raise VbmdError(
            f"dimensions {tuple(dim)} are larger than the {data_size}-byte compressed data can hold",
            path,
        )
    return {
        "version": version,
        "aim_type": aim_type,
        "type_name": TYPE_NAMES[aim_type],
        "dimensions_xyz": tuple(int(d) for d in dim),
        "position_xyz": tuple(int(p) for p in pos),
        "offset_xyz": tuple(int(o) for o in off),
        "log_size": block_sizes[1],
        "data_size": data_size,
        "file_size": size,
    }


_NUMBER = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"


def calibration_from_log(log: str) -> Calibration | None:
    """The density calibration a Scanco processing log states, or None if it states none."""
    if not log:
        return None

    def find(pattern):
        m = re.search(pattern, log)
        return float(m.group(1)) if m else None

    mu_scaling = find(r"Mu_Scaling\s+" + _NUMBER)
    slope = find(r"Density:\s*slope\s+" + _NUMBER)
    intercept = find(r"Density:\s*intercept\s+" + _NUMBER)
    mu_water = find(r"HU:\s*mu water\s+" + _NUMBER)
    if mu_scaling is None or slope is None or intercept is None or slope == 0 or mu_scaling <= 0:
        return None
    if mu_water is not None and mu_water <= 0:
        mu_water = None
    return Calibration(
        density_slope=slope, density_intercept=intercept, mu_scaling=mu_scaling, mu_water=mu_water
    )


def hand_from_log(log: str) -> str | None:
    """The hand our own writer records ("Hand  left"); the scanner's logs carry none we trust."""
    m = re.search(r"^Hand\s+(left|right)\s*$", log or "", flags=re.MULTILINE | re.IGNORECASE)
    return m.group(1).lower() if m else None


def segmented_hand_from_log(log: str) -> tuple[str, str] | None:
    """(hand, source) of the "Segmented as" line our writer adds to a segmentation's mask."""
    m = re.search(r"^Segmented as\s+(left|right) hand \(from (\w+)\)\s*$", log or "", flags=re.MULTILINE)
    return (m.group(1), m.group(2)) if m else None


def _log_line(name: str, value) -> str:
    """A processing-log line in the scanner's layout: a 30-character name, then the value."""
    text = f"{value}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{name:<30}{text:>20}"
    return f"{name:<30}{text:<50}"


def calibration_log(calibration: Calibration) -> str:
    lines = [
        "!-------------------------------------------------------------------------------",
        _log_line("Mu_Scaling", int(round(calibration.mu_scaling))),
        _log_line("Density: unit", "mg HA/ccm"),
        _log_line("Density: slope", f"{calibration.density_slope:.5f}"),
        _log_line("Density: intercept", f"{calibration.density_intercept:.6f}"),
    ]
    if calibration.mu_water is not None:
        lines.append(_log_line("HU: mu water", f"{calibration.mu_water:.5f}"))
    return "\n".join(lines) + "\n"


def _writer_lines(what: str, extra: dict | None = None) -> str:
    from .. import __version__

    now = _dt.datetime.now()
    stamp = now.strftime("%d-%b-%Y %H:%M:%S.").upper() + f"{now.microsecond // 10000:02d}"
    lines = [
        "!-------------------------------------------------------------------------------",
        _log_line("Procedure:", f"napari-vbmd {__version__}: {what}"),
        _log_line("Time", stamp),
    ]
    for key, value in (extra or {}).items():
        lines.append(_log_line(key, value))
    return "\n".join(lines) + "\n"


def _scan_from_aimio(array: np.ndarray, meta: dict, raw_log: str, path: Path, as_mask: bool | None) -> Scan:
    log = raw_log or ""
    spacing_xyz = tuple(float(s) for s in meta["element_size"])
    origin_xyz = tuple(float(o) for o in meta["origin"])
    aim_type = int(meta.get("aim_type", 0))
    binary_type = aim_type in (TYPE_BINCMP, TYPE_BIT8) or (
        aim_type in (TYPE_CHAR, TYPE_CHARCMP) and _looks_binary(array)
    )
    is_mask = binary_type if as_mask is None else as_mask
    header = {
        "format": "aim",
        "aim_version": int(meta.get("version", 0)),
        "aim_type": aim_type,
        "position": tuple(int(p) for p in meta["position"]),
        "offset": tuple(int(o) for o in meta["offset"]),
        "element_size": spacing_xyz,
        "processing_log": log,
    }
    try:
        calibration = calibration_from_log(log)
    except VbmdError as exc:  # e.g. Mu_Scaling 1e-320: finite numbers whose ratio is not
        raise VbmdError(f"the processing log's calibration is unusable: {exc.problem}", path) from None
    common = dict(
        spacing=spacing_xyz[::-1],
        origin=origin_xyz[::-1],
        direction=IDENTITY_DIRECTION,
        calibration=calibration,
        hand=hand_from_log(log),
        header=header,
        source=str(path),
    )
    if is_mask:
        return Scan(data=(array != 0).astype(np.uint8), kind="mask", unit="unknown", **common)
    if array.dtype.kind == "f":
        # Our own float AIMs hold densities; a float AIM from elsewhere is of unknown units.
        unit = UNIT_DENSITY if "napari-vbmd" in log and "values mg HA/ccm" in log else "unknown"
        return Scan(data=array, kind="image", unit=unit, **common)
    return Scan(data=array, kind="image", unit=UNIT_NATIVE, **common)


def _looks_binary(array: np.ndarray) -> bool:
    values = np.unique(array[:: max(1, array.shape[0] // 8)])
    return values.size <= 2


def read_aim(path: str | Path, as_mask: bool | None = None) -> Scan:
    """Read an AIM file. Binary AIMs (e.g. the scanner's 0/127 masks) become masks."""
    import py_aimio

    path = Path(path)
    validate_aim_header(path)
    try:
        array, meta = py_aimio.read_aim(str(path))
        # read_aim re-renders the log through a dict (losing lines and reformatting numbers);
        # aim_info returns it as stored, which is what must be kept and passed on.
        raw_log = py_aimio.aim_info(str(path)).get("processing_log") or ""
    except MemoryError:
        raise VbmdError("not enough memory to read this AIM file", path) from None
    except Exception as exc:  # aimio raises RuntimeError for corrupt content
        raise VbmdError(f"cannot read AIM file: {one_line(exc)}", path) from None
    return _scan_from_aimio(np.asarray(array), meta, raw_log, path, as_mask)


def _aim_geometry(scan: Scan, parent: Scan | None) -> dict:
    spacing_xyz = scan.spacing[::-1]
    reference = parent if parent is not None else scan
    offset = tuple(reference.header.get("offset", (0, 0, 0))) if reference.header.get("format") == "aim" else (0, 0, 0)
    if parent is not None and not np.allclose(parent.spacing, scan.spacing, rtol=1e-4):
        raise VbmdError("the mask's voxel size differs from its parent scan's", scan.source)
    position = []
    for axis in range(3):
        # origin = (position + offset) * spacing, the convention aimio (and ITK) read with
        index = scan.origin[::-1][axis] / spacing_xyz[axis] - offset[axis]
        rounded = round(index)
        if abs(index - rounded) > 1e-3:
            raise VbmdError(
                "an AIM stores positions in whole voxels; this origin is not on the voxel grid", scan.source
            )
        position.append(int(rounded))
    if not np.allclose(scan.direction, IDENTITY_DIRECTION, atol=1e-6):
        raise VbmdError("an AIM cannot store a rotated (oblique) orientation", scan.source)
    return {"position": tuple(position), "offset": tuple(int(o) for o in offset), "element_size": spacing_xyz}


def _vms_float_bytes(value: float) -> bytes:
    """A VMS F-float (as v020 headers store element sizes): IEEE of 4x the value, 16-bit words swapped."""
    ieee = struct.pack("<f", value * 4.0)
    return ieee[2:4] + ieee[0:2]


def _write_aim_v020(path: Path, data: np.ndarray, meta: dict) -> None:
    """aimio-py writes only v030; older scanner software wants v020, which is simple enough to write."""
    dtype_types = {np.dtype(np.int8): TYPE_CHAR, np.dtype(np.int16): TYPE_SHORT, np.dtype(np.float32): TYPE_FLOAT}
    aim_type = dtype_types.get(data.dtype)
    if aim_type is None:
        raise VbmdError(f"AIM v020 cannot hold {data.dtype} data", path)
    log = meta["processing_log"].encode("latin-1", errors="replace") + b"\0"
    body = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
    dim_xyz = data.shape[::-1]
    header = struct.pack("<i5i", 16, 0, 0, 0, 0, aim_type)
    header += struct.pack("<3i", *meta["position"]) + struct.pack("<3i", *dim_xyz)
    header += struct.pack("<3i", *meta["offset"]) + struct.pack("<12i", *([0] * 12))
    header += b"".join(_vms_float_bytes(float(e)) for e in meta["element_size"])
    header += struct.pack("<5i", 0, 0, 0, 0, 0)
    assert len(header) == 140
    pre = struct.pack("<5i", 20, 140, len(log), len(body), 0)
    with open(path, "wb") as fh:
        fh.write(pre + header + log + body)


def write_aim(
    path: str | Path,
    scan: Scan,
    parent: Scan | None = None,
    protect=(),
    version: int = 30,
) -> Path:
    """Write an AIM. Masks become char 0/127 (run-length compressed, as the scanner's gobj_to_aim
    writes them); images keep native int16 with their calibration in the log, or float32 densities.

    The processing log of ``parent`` (or of the scan itself) is kept and a section saying what wrote
    the file is appended.
    """
    import py_aimio

    if version not in (20, 30):
        raise VbmdError(f"AIM version {version} cannot be written; use 20 or 30", path)
    geometry = _aim_geometry(scan, parent)
    base_log = ""
    for candidate in (parent, scan):
        if candidate is not None and candidate.header.get("processing_log"):
            base_log = candidate.header["processing_log"]
            break
    calibration = scan.calibration or (parent.calibration if parent is not None else None)
    if not base_log:
        base_log = "! Processing Log\n!\n"
    if calibration is not None and calibration_from_log(base_log) is None:
        base_log = base_log.rstrip("\n") + "\n" + calibration_log(calibration)

    extra = {}
    hand = scan.hand or (parent.hand if parent is not None else None)
    if hand and hand_from_log(base_log) is None:
        extra["Hand"] = hand
    segmented = scan.header.get("segmentation") or {}
    if scan.kind == "mask" and segmented.get("hand_source"):  # where the side the mask was made for came from
        extra["Segmented as"] = f"{segmented.get('hand')} hand (from {segmented['hand_source']})"
    if scan.kind == "mask" and segmented.get("joint_cut"):  # the mask was parted from the proximal phalanx
        cut = segmented["joint_cut"]
        extra["Joint cut"] = (f"slices {cut['other_slices'][0]}-{cut['other_slices'][1]}, {cut['removed_voxels']} "
                              "voxels of another bone beside MC2 removed" if cut.get("beside") else
                              f"slice {cut['slice']}, {cut['removed_voxels']} voxels across the joint removed")
    if scan.kind == "mask":
        data = (np.asarray(scan.data) != 0).view(np.int8)  # a new array: safe to scale in place
        data *= MASK_VALUE  # (np.where with Python ints went through int64: 5 s for a 1536² × 110 mask)
        aim_type = TYPE_BINCMP
        extra["Mask values"] = f"0 outside, {MASK_VALUE} inside (as gobj_to_aim)"
        what = "mask written for togobj_from_aim"
    elif scan.unit == UNIT_NATIVE and np.issubdtype(scan.data.dtype, np.integer):
        if scan.data.min() < -32768 or scan.data.max() > 32767:
            raise VbmdError("native values do not fit int16", scan.source)
        data = scan.data.astype(np.int16, copy=False)
        aim_type = TYPE_SHORT
        what = "image (native values)"
    elif scan.unit in (UNIT_DENSITY, UNIT_HU) or scan.data.dtype.kind == "f":
        if scan.unit == UNIT_HU:
            data = scan.density()
        elif scan.unit == UNIT_NATIVE:
            data = scan.density()
        elif scan.unit == UNIT_DENSITY:
            data = scan.data
        else:
            raise VbmdError("the scan's units are unknown; say what they are before saving as AIM", scan.source)
        data = np.asarray(data, dtype=np.float32)
        aim_type = TYPE_FLOAT
        extra["Unit"] = "values mg HA/ccm"
        what = "image (float densities, values mg HA/ccm)"
    else:
        raise VbmdError(f"cannot write {scan.data.dtype} data with unit {scan.unit} as AIM", scan.source)
    log = base_log.rstrip("\n") + "\n" + _writer_lines(what, extra)
    meta = {
        **geometry,
        "processing_log": log,
        "aim_type": aim_type,
        "version": 3 if version == 30 else 2,
    }
    if version == 20 and aim_type == TYPE_BINCMP:
        meta["aim_type"] = aim_type = TYPE_CHAR  # v020 masks as plain char 0/127
    with atomic_path(path, protect=protect) as tmp:
        try:
            if version == 20:
                _write_aim_v020(tmp, data, meta)
            else:
                py_aimio.write_aim(str(tmp), np.ascontiguousarray(data), meta)
        except Exception as exc:
            raise VbmdError(f"cannot write AIM: {one_line(exc)}", path) from None
        if os.path.getsize(tmp) == 0:
            raise VbmdError("AIM writer produced an empty file", path)
    return Path(path)
