"""A minimal Scanco GOBJ writer for tests: one filled ellipse per slice.

The layout is the one aimio-py's reader parses (CTDATA-HEADER_V1, data type 6, 512-byte header;
per slice a 13-int slice record, then a 10-int primitive record, shape 6 = ellipse). Coordinates
are the scanner's whole-voxel coordinates, as in a GOBJ drawn on an AIM with a position.
No sample GOBJ is public, so this writes what the reader documents; it is not a product feature.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

MAGIC = b"CTDATA-HEADER_V1"
SLICE_TAIL = (0, 3, 20, 0, 0, 16512, 16512)


def write_gobj_ellipses(path: Path, ellipses, dims_xyz, spacing_mm: float) -> Path:
    """``ellipses``: (z, centre x, centre y, width, height) in scanner voxels, one per slice."""
    header = bytearray(512)
    header[: len(MAGIC)] = MAGIC
    struct.pack_into("<i", header, 16, 6)
    struct.pack_into("<3i", header, 32, *dims_xyz)
    struct.pack_into("<3i", header, 44, *(int(round(d * spacing_mm * 1000)) for d in dims_xyz))
    struct.pack_into("<i", header, 508, 0)
    body = bytearray()
    for z, cx, cy, width, height in ellipses:
        body += struct.pack("<13i", 1, cx, cy, z, width, height, *SLICE_TAIL)
        body += struct.pack("<10i", 0, 6, cx, cy, z, width, height, 0, 3, 0)
    body += bytes(64)
    Path(path).write_bytes(bytes(header) + bytes(body))
    return Path(path)


def ellipses_from_mask(mask: np.ndarray, position_zyx) -> list[tuple[int, int, int, int, int]]:
    """The bounding ellipse of a round mask in each slice, in scanner voxel coordinates."""
    out = []
    for z in range(mask.shape[0]):
        ys, xs = np.nonzero(mask[z])
        if not len(ys):
            continue
        width, height = int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)
        # the reader's box starts at centre - (size - 1) // 2
        cx, cy = int(xs.min()) + (width - 1) // 2, int(ys.min()) + (height - 1) // 2
        out.append((z + position_zyx[0], cx + position_zyx[2], cy + position_zyx[1], width, height))
    return out
