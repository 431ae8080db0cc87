"""Scanco GOBJ contours, rasterised to a mask on the grid of the contour's own bounding box.

aimio-py parses the file (its slice and contour records); the sizes are checked here before any
voxel is allocated, and contours are filled here in time linear in their length. aimio-py's own
filler tests every contour edge against every row of the box, so one contour of 20,000 steps took
89 s; :func:`fill_contour` gives the same voxels (the same boundary line and the same scan-line
rule at row centres, crossings paired left to right) from one pass over the edges.

The origin is in the scanner's voxel coordinates, like an AIM's, so ``scan.align_mask`` places
the contour on the scan it was drawn on.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import VbmdError, one_line
from ..scan import Scan
from .aim import read_head

GOBJ_MAGIC = b"CTDATA-HEADER_V1"
MAX_FILE_BYTES = 64 * 2**20  # a contour file of a whole scan is kilobytes to a few megabytes
MAX_SIDE = 16384  # voxels per axis of the contours' box (HR-pQCT fields are 1536-2304 wide)
MAX_VOXELS = 2**31  # of the mask (one byte each)


def _draw_lines(mask: np.ndarray, points: np.ndarray) -> None:
    """The closed polyline through ``points`` (y, x), each segment sampled at max(|dy|, |dx|) + 1
    rounded points (half to even, as Python's round), clipped to the mask."""
    start = points
    end = np.roll(points, -1, axis=0)
    delta = end - start
    steps = np.abs(delta).max(axis=1)
    counts = steps + 1
    seg = np.repeat(np.arange(len(points)), counts)
    first = np.cumsum(counts) - counts
    index = np.arange(int(counts.sum())) - np.repeat(first, counts)
    safe_steps = np.where(steps[seg] == 0, 1, steps[seg])
    ys = np.rint(start[seg, 0] + delta[seg, 0] * index / safe_steps).astype(np.int64)
    xs = np.rint(start[seg, 1] + delta[seg, 1] * index / safe_steps).astype(np.int64)
    inside = (ys >= 0) & (ys < mask.shape[0]) & (xs >= 0) & (xs < mask.shape[1])
    mask[ys[inside], xs[inside]] = True


def fill_contour(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    """A filled closed contour, boundary included, on a (height, width) grid."""
    height, width = shape
    mask = np.zeros(shape, dtype=bool)
    points = np.asarray(points, dtype=np.int64).reshape(-1, 2)
    if not len(points):
        return mask
    _draw_lines(mask, points)
    y0, x0 = points[:, 0], points[:, 1]
    y1, x1 = np.roll(y0, -1), np.roll(x0, -1)
    sloped = y0 != y1
    y0, x0, y1, x1 = y0[sloped], x0[sloped], y1[sloped], x1[sloped]
    if not len(y0):
        return mask
    row_lo = max(0, int(points[:, 0].min()))
    row_hi = min(height - 1, int(points[:, 0].max()))
    # An edge crosses the centre y + 0.5 of every row y in [min(y0, y1), max(y0, y1) - 1].
    first = np.maximum(np.minimum(y0, y1), row_lo)
    last = np.minimum(np.maximum(y0, y1) - 1, row_hi)
    n = np.maximum(last - first + 1, 0)
    edge = np.repeat(np.arange(len(y0)), n)
    rows = np.repeat(first, n) + (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n))
    scan_y = rows + 0.5
    cross = x0[edge] + (scan_y - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
    order = np.lexsort((cross, rows))
    rows, cross = rows[order], cross[order]
    # crossings of each row, paired left to right: (1st, 2nd), (3rd, 4th), ...
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    left = rank % 2 == 0
    pair_start = np.flatnonzero(left)
    pair_start = pair_start[(pair_start + 1 < len(rows))]
    pair_start = pair_start[rows[pair_start + 1] == rows[pair_start]]
    span_rows = rows[pair_start]
    lo = np.maximum(0, np.ceil(cross[pair_start])).astype(np.int64)
    hi = np.minimum(width - 1, np.floor(cross[pair_start + 1])).astype(np.int64)
    keep = hi >= lo
    span_rows, lo, hi = span_rows[keep], lo[keep], hi[keep]
    if len(span_rows):
        edges = np.zeros((height, width + 1), dtype=np.int32)
        np.add.at(edges, (span_rows, lo), 1)
        np.add.at(edges, (span_rows, hi + 1), -1)
        mask |= np.cumsum(edges[:, :width], axis=1) > 0
    return mask


def _parser():
    """aimio-py's GOBJ record parser; None when this aimio-py version lays it out differently."""
    try:
        from py_aimio import gobj
    except ImportError:
        return None
    names = ("_parse_header", "_parse_slices", "_build_meta", "_decode_contour_points", "_rasterize_primitive",
             "_is_subtractive_drawable", "_strict_interior", "_GobjContour")
    return gobj if all(hasattr(gobj, name) for name in names) else None


def _check_geometry(meta: dict, path: Path) -> None:
    dims_p = tuple(int(d) for d in meta.get("header_dimensions", ()))
    dims_um = tuple(int(d) for d in meta.get("header_dimensions_um", ()))
    if len(dims_p) != 3 or len(dims_um) != 3 or min(dims_p + dims_um) <= 0:
        raise VbmdError(f"GOBJ header states no voxel size (dimensions {dims_p} voxels, {dims_um} um)", path)
    width, height, depth = (int(d) for d in meta["dimensions"])
    if min(width, height, depth) <= 0 or max(width, height, depth) > MAX_SIDE or width * height * depth > MAX_VOXELS:
        raise VbmdError(f"GOBJ contours span {width} x {height} x {depth} voxels: beyond any scan (corrupt sizes)", path)


def read_gobj(path: str | Path) -> Scan:
    path = Path(path)
    size, magic = read_head(path, 16, "a GOBJ")
    if not magic.startswith(GOBJ_MAGIC):
        raise VbmdError("not a GOBJ file (no CTDATA-HEADER_V1 header)", path)
    if size > MAX_FILE_BYTES:
        raise VbmdError(f"{size / 2**20:.0f} MB is far more than a contour file holds (corrupt?)", path)
    try:
        array, meta = _rasterise(path)
    except VbmdError:
        raise
    except MemoryError:
        raise VbmdError("not enough memory to rasterise this GOBJ contour", path) from None
    except Exception as exc:  # aimio-py raises ValueError (and worse) on corrupt records
        raise VbmdError(f"cannot read GOBJ contour: {one_line(exc)}", path) from None
    spacing_xyz = tuple(float(s) for s in meta["spacing"])
    return Scan(
        data=array,
        spacing=spacing_xyz[::-1],
        origin=tuple(float(o) for o in meta["origin"])[::-1],
        kind="mask",
        header={"format": "gobj", "position": tuple(int(p) for p in meta.get("position", (0, 0, 0)))},
        source=str(path),
    )


def _rasterise(path: Path) -> tuple[np.ndarray, dict]:
    gobj = _parser()
    if gobj is None:  # another aimio-py: its own reader, with the sizes checked first
        import py_aimio

        meta = py_aimio.gobj_info(str(path))
        _check_geometry(meta, path)
        work = sum(int(c["step_count"]) for c in meta.get("contours", [])) * int(meta["dimensions"][1])
        if work > 50_000_000:
            raise VbmdError("contours too long for aimio-py's rasteriser in this version", path)
        array, meta = py_aimio.read_gobj(str(path), value=1, crop="tight")
        return (np.asarray(array) != 0).astype(np.uint8), meta
    data = path.read_bytes()
    header = gobj._parse_header(data)
    slices = gobj._parse_slices(data, int(header["data_offset"]))
    meta = gobj._build_meta(path, header, slices, crop="tight", value=1)
    _check_geometry(meta, path)
    payload = data[int(header["data_offset"]):]
    width, height, depth = (int(d) for d in meta["dimensions"])
    position = tuple(int(p) for p in meta["position"])
    image = np.zeros((depth, height, width), dtype=np.uint8)
    for image_slice in slices:
        z = image_slice.z - position[2]
        for index, drawable in enumerate(image_slice.drawables):
            if isinstance(drawable, gobj._GobjContour):
                if drawable.step_count <= 0:
                    raise VbmdError(f"GOBJ contour at byte {drawable.file_offset} has no steps", path)
                points = gobj._decode_contour_points(payload, drawable, position)
                mask = fill_contour((height, width), points)
            else:
                mask = gobj._rasterize_primitive((height, width), drawable, position)
            if gobj._is_subtractive_drawable(drawable, image_slice, index):
                image[z][gobj._strict_interior(mask)] = 0
            else:
                image[z][mask] = 1
    return image, meta
