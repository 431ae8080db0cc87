"""TIFF stacks through tifffile, with spacing where the file has it.

Reads ImageJ hyperstacks (resolution tags + "spacing"/"unit") and the JSON description tifffile
writes; writes the latter with spacing and origin in mm, plus ImageJ-readable resolution tags.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..errors import VbmdError, one_line, quiet_logs
from ..scan import UNIT_UNKNOWN, UNITS, Scan
from .aim import read_head

#: the most voxel bytes a TIFF may declare (a hostile header must not make us allocate terabytes)
MAX_BYTES = 16 * 2**30

_UNIT_TO_MM = {"mm": 1.0, "millimeter": 1.0, "um": 1e-3, "µm": 1e-3, "micron": 1e-3, "\\u00B5m": 1e-3, "cm": 10.0, "m": 1000.0, "nm": 1e-6}


def _json_description(page) -> dict:
    """A JSON object in the image description (as tifffile writes it without a shape), else {}."""
    import json

    text = page.description if hasattr(page, "description") else ""
    if not isinstance(text, str) or not text.lstrip().startswith("{") or len(text) > 1_000_000:
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _three_numbers(value, positive: bool) -> tuple[float, float, float] | None:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(numbers) != 3 or not all(np.isfinite(v) and (v > 0 or not positive) for v in numbers):
        return None
    return numbers


def _imagej_spacing(ij: dict, tags: dict, n_slices: int) -> tuple[list[float] | None, str | None]:
    """(z, y, x) spacing in mm from ImageJ metadata and resolution tags, or (None, why not)."""
    unit = str(ij.get("unit", "")).strip()
    scale = _UNIT_TO_MM.get(unit)
    if scale is None:
        return None, "the TIFF states no length unit" if not unit else f"unknown length unit {unit!r}"
    spacing = [None, None, None]
    for axis, tag in ((1, "YResolution"), (2, "XResolution")):
        res = tags.get(tag)
        if isinstance(res, tuple) and len(res) == 2 and all(isinstance(v, (int, float)) for v in res) and res[0] > 0 and res[1] > 0:
            spacing[axis] = res[1] / res[0] * scale
    if "spacing" in ij:
        try:
            spacing[0] = float(ij["spacing"]) * scale
        except (TypeError, ValueError):
            return None, f"its slice spacing {ij['spacing']!r} is not a number"
    if spacing[0] is None and n_slices == 1 and spacing[1] is not None and spacing[2] is not None:
        return None, "a single slice states no slice thickness"
    if any(s is None or not (np.isfinite(s) and s > 0) for s in spacing):
        return None, "the TIFF states no complete voxel size"
    return spacing, None


def _volume(series, path: Path, ij: dict) -> np.ndarray:
    """A greyscale (z, y, x) volume from a TIFF series, or a one-line refusal of what is not one."""
    shape, axes = tuple(series.shape), str(series.axes)
    if axes == "CYX" and ij.get("mode", "grayscale") == "grayscale" and "slices" not in ij:
        # tifffile's ImageJ writer calls the first axis of a 3-D array "channels": a grey stack
        axes = "ZYX"
    for letter, what in (("S", "colour samples (RGB)"), ("C", "channels"), ("T", "time points")):
        n = shape[axes.index(letter)] if letter in axes else 1
        if n > 1:
            raise VbmdError(f"TIFF holds {n} {what} per pixel ({'x'.join(map(str, shape))}, axes {axes}); "
                            "a greyscale volume (z, y, x) is needed", path)
    kept = [n for n in shape if n != 1] if len(shape) > 3 else list(shape)
    if len(kept) > 3:
        raise VbmdError(f"TIFF holds {len(kept)}-D data ({'x'.join(map(str, shape))}); a 3-D stack (z, y, x) is needed", path)
    n_bytes = int(np.prod(shape, dtype=np.float64)) * np.dtype(series.dtype).itemsize
    if n_bytes > MAX_BYTES:
        raise VbmdError(f"TIFF declares {n_bytes / 1e9:.1f} GB of voxels, more than this reader accepts", path)
    data = series.asarray()
    if np.dtype(data.dtype).kind not in "biuf":
        raise VbmdError(f"TIFF voxels of type {data.dtype} are not greyscale numbers", path)
    data = data.reshape(kept) if len(kept) != data.ndim else data
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise VbmdError(f"TIFF holds {data.ndim}-D data; a 3-D stack (z, y, x) is needed", path)
    return data


def read_tiff(path: str | Path, as_mask: bool | None = None) -> Scan:
    import tifffile

    path = Path(path)
    read_head(path, 0, "a TIFF")  # a folder, a FIFO, an unreadable or empty file: one line
    try:
        with quiet_logs("tifffile"), tifffile.TiffFile(str(path)) as tif:
            if not tif.series:
                raise VbmdError("TIFF holds no image", path)
            ij = tif.imagej_metadata or {}
            data = _volume(tif.series[0], path, ij if isinstance(ij, dict) else {})
            page = tif.pages[0]
            shaped = tif.shaped_metadata[0] if tif.shaped_metadata else _json_description(tif.pages[0])
            tags = {t.name: t.value for t in page.tags.values()}
    except VbmdError:
        raise
    except MemoryError:
        raise VbmdError("not enough memory to read this TIFF file", path) from None
    except Exception as exc:
        raise VbmdError(f"not a readable TIFF file ({one_line(exc)})", path) from None
    if not isinstance(ij, dict):
        ij = {}
    if not isinstance(shaped, dict):
        shaped = {}
    spacing, note = None, None
    origin = (0.0, 0.0, 0.0)
    unit = UNIT_UNKNOWN
    kind = "image"
    if "spacing_mm" in shaped or "origin_mm" in shaped:  # this project's own description
        spacing = _three_numbers(shaped.get("spacing_mm"), positive=True)
        if spacing is None:
            note = f"its description's spacing_mm {shaped.get('spacing_mm')!r} is not three positive sizes"
        if "origin_mm" in shaped:
            origin = _three_numbers(shaped.get("origin_mm"), positive=False)
            if origin is None:
                raise VbmdError(f"its description's origin_mm {shaped.get('origin_mm')!r} is not three numbers", path)
        stated = shaped.get("unit")
        unit = stated if isinstance(stated, str) and stated in UNITS else UNIT_UNKNOWN
        kind = "mask" if shaped.get("kind") == "mask" else "image"
    else:
        spacing, note = _imagej_spacing(ij, tags, data.shape[0])
    if as_mask is not None:
        kind = "mask" if as_mask else "image"
    if kind == "mask":
        data = (data != 0).astype(np.uint8)
    header = {"format": "tiff", "spacing_known": spacing is not None}
    if spacing is None:
        header["spacing_note"] = note or "the TIFF does not state it"
    return Scan(
        data=np.ascontiguousarray(data),
        spacing=tuple(spacing) if spacing is not None else (1.0, 1.0, 1.0),
        origin=tuple(origin),
        unit=unit,
        kind=kind,
        header=header,
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
            photometric="minisblack",  # 3 or 4 slices would otherwise be stored as colour planes
        )
    return path
