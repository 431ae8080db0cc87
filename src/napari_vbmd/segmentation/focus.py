"""MC2 in a whole-hand field of view: segment within a box around it, found from the row of heads.

A whole-hand field holds, besides MC2, three more metacarpals and the thumb. The pipeline crops to
all the bone it finds and leaves the choice of MC2 to the network, and a network that never saw a
thumb may take it for MC2 (the bundled phantom-trained model did, on whole-hand phantoms with a
thumb: docs/hand.md). The hand detector finds the row of heads MC2-MC5 and its radial end without
knowing the hand (:mod:`.hand_image`), so MC2 is known before the network runs:
the pipeline (:func:`~.pipeline.run`) segments a box holding MC2 and MC3 (as a cropped scan does) and
not the thumb, puts the mask back on the scan's grid, and checks that the mask lies on MC2; when it
does not, it refuses (:class:`OtherBoneError`) rather than return the mask of another bone.

Fields without such a row (a crop around MC2 and MC3) go through the pipeline unchanged.
Engine code: no napari, no Qt.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..errors import VbmdError
from ..scan import Scan

#: a field whose longer in-plane side is shorter than this (mm) cannot hold a whole hand (a crop around
#: MC2 and MC3 is about 32 x 40 mm; a hand is 70-90 mm across its knuckles)
WHOLE_HAND_MIN_MM = 60.0
#: room around MC2's head in the box (mm): its outline reaches past the equivalent circle
MC2_MARGIN_MM = 7.0
#: room around MC3's head (mm): MC3 is there for the network's context, not measured
MC3_MARGIN_MM = 2.0
#: the box stops this far (mm) short of the thumb's section
THUMB_CLEARANCE_MM = 2.0


class OtherBoneError(VbmdError):
    """The mask the model made lies on another bone than MC2."""


class MaskRefused(VbmdError):
    """A refusal of a mask for the model's doing (:func:`~napari_vbmd.segmentation.pipeline.mask_concern`):
    ``refused`` holds the refused result, for a front end that lets a person correct it (None when not given),
    and ``reason`` the refusal's line without the advice."""

    refused = None
    reason = ""


class TwoBonesError(MaskRefused, OtherBoneError):
    """The mask the model made holds MC2 and a neighbour together (any field of view)."""


class BeyondJointError(MaskRefused, OtherBoneError):
    """The mask the model made runs out of the scan at both ends: MC2 and the bone beyond its joint (any field)."""


class BrokenOutlineError(MaskRefused):
    """The mask the model made broke up on many slices (gaps, holes open to the outside, pieces)."""


def _head_radius(size_mm2: float) -> float:
    return math.sqrt(size_mm2 / math.pi)


def mc2_box(scan: Scan, evidence) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) voxel box of ``scan`` holding MC2 and MC3 and not the thumb, from the row of
    heads in ``evidence`` (a hand detection's); None without a row whose radial end is clear."""
    from ..review_hand import mc2_first, mc2_locatable

    if not mc2_locatable(evidence):
        return None
    order = mc2_first(evidence, range(len(evidence.row_voxels)))
    dy, dx = scan.spacing[1], scan.spacing[2]
    (y2, x2), (y3, x3) = (evidence.row_voxels[order[0]], evidence.row_voxels[order[1]])
    r2 = _head_radius(evidence.row_sizes_mm2[order[0]]) + MC2_MARGIN_MM
    r3 = _head_radius(evidence.row_sizes_mm2[order[1]]) + MC3_MARGIN_MM
    y0 = min(y2 - r2 / dy, y3 - r3 / dy)
    y1 = max(y2 + r2 / dy, y3 + r3 / dy)
    x0 = min(x2 - r2 / dx, x3 - r3 / dx)
    x1 = max(x2 + r2 / dx, x3 + r3 / dx)
    if evidence.thumb_voxel is not None:
        ty, tx = evidence.thumb_voxel
        ry, rx = ((_thumb_radius(evidence) + THUMB_CLEARANCE_MM) / s for s in (dy, dx))
        if ty - ry < y1 and ty + ry > y0 and tx - rx < x1 and tx + rx > x0:  # the thumb reaches into the box
            # move the one edge that frees the box of the thumb at the least cost, keeping MC2 whole
            options = sorted([(ty + ry - y0, "y0", ty + ry), (y1 - (ty - ry), "y1", ty - ry),
                              (tx + rx - x0, "x0", tx + rx), (x1 - (tx - rx), "x1", tx - rx)])
            m2y, m2x = (r2 - MC2_MARGIN_MM / 2) / dy, (r2 - MC2_MARGIN_MM / 2) / dx
            for _, edge, value in options:
                if edge == "y0" and value <= y2 - m2y:
                    y0 = value
                elif edge == "y1" and value >= y2 + m2y:
                    y1 = value
                elif edge == "x0" and value <= x2 - m2x:
                    x0 = value
                elif edge == "x1" and value >= x2 + m2x:
                    x1 = value
                else:
                    continue
                break
            else:
                return None
    ny, nx = scan.shape[1], scan.shape[2]
    box = (max(0, int(math.floor(y0))), min(ny, int(math.ceil(y1)) + 1),
           max(0, int(math.floor(x0))), min(nx, int(math.ceil(x1)) + 1))
    if box[1] - box[0] < 8 or box[3] - box[2] < 8:
        return None
    return box


def _thumb_radius(evidence) -> float:
    return _head_radius(evidence.thumb_size_mm2) if evidence.thumb_size_mm2 else 6.0


def crop_to(scan: Scan, box) -> Scan:
    """A view of ``scan`` cut to ``box`` in the slice plane, with its origin moved along (the
    direction matrix has physical x, y, z rows and the array's x, y, z columns; origin is z, y, x)."""
    y0, y1, x0, x1 = box
    matrix = np.asarray(scan.direction, dtype=float).reshape(3, 3)
    shift_xyz = matrix @ np.array([x0 * scan.spacing[2], y0 * scan.spacing[1], 0.0])
    return dataclasses.replace(scan, data=scan.data[:, y0:y1, x0:x1],
                               origin=tuple(float(o) for o in np.asarray(scan.origin) + shift_xyz[::-1]))


def is_whole_hand_field(scan: Scan) -> bool:
    """Whether the slice plane is large enough to hold a whole hand (and worth looking for a row).

    The longer side decides: a hand is 70-90 mm across its knuckles but only 30-45 mm from back to palm,
    so a field cropped to the hand (as an operator's AIM often is) is long and narrow."""
    return max(scan.shape[1] * scan.spacing[1], scan.shape[2] * scan.spacing[2]) >= WHOLE_HAND_MIN_MM


def on_full_grid(result, scan: Scan, box):
    from .preprocess import Box

    y0, _, x0, _ = box
    full = np.zeros(scan.shape, dtype=np.uint8)
    full[:, box[0]:box[1], box[2]:box[3]] = result.mask.data
    mask = scan.with_data(full, kind="mask", unit="unknown", calibration=scan.calibration, hand=result.hand)
    mask.header = dict(scan.header)
    mask.header["segmentation"] = dict(result.mask.header.get("segmentation", {}), focus_box_yx=list(box))
    b = result.box
    result.box = Box(b.z0, b.z1, b.y0 + y0, b.y1 + y0, b.x0 + x0, b.x1 + x0)
    if result.mask.header.get("segmentation", {}).get("box") is not None:
        mask.header["segmentation"]["box"] = result.box.to_list()
    result.mask = mask
    return result
