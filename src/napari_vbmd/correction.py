"""Mask corrections a reviewer needs beyond painting, and what a correction changed.

Every operation takes a mask (z, y, x) and returns a new uint8 0/1 array; the input is never
modified, so a front end can diff the two and record the change for undo. The model's mask, the
corrected one and every operation in between are kept by ``napari_vbmd.session.MaskHistory``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .errors import VbmdError
from .segmentation.postprocess import fill_holes_per_slice, keep_largest_component


def as_inside(mask) -> np.ndarray:
    """A 3-D mask (z, y, x) as a new bool array (any non-zero voxel is inside); else a one-line VbmdError."""
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise VbmdError(f"the mask must be 3-D (z, y, x), got {mask.ndim}-D")
    return mask != 0


def _check_slice(mask: np.ndarray, z: int) -> int:
    z = int(z)
    if not 0 <= z < mask.shape[0]:
        raise VbmdError(f"slice {z} is outside the mask's 0..{mask.shape[0] - 1}")
    return z


def _slices(mask: np.ndarray, z: int | None) -> range:
    if z is None:
        return range(mask.shape[0])
    z = _check_slice(mask, z)
    return range(z, z + 1)


def fill_holes(mask, z: int | None = None) -> np.ndarray:
    """Fill holes in slice ``z`` (or in every slice when None): enclosed background becomes mask
    (the pipeline's own per-slice filling, :func:`~napari_vbmd.segmentation.postprocess.fill_holes_per_slice`)."""
    inside = as_inside(mask)
    out = inside.copy()
    part = _slices(inside, z)
    out[part.start:part.stop] = fill_holes_per_slice(inside[part.start:part.stop])
    return out.astype(np.uint8)


def remove_islands(mask, z: int | None = None) -> np.ndarray:
    """Keep only the largest connected piece (face-connected): of slice ``z`` (2-D), or of the volume
    (3-D) when None (the pipeline's MC2 component,
    :func:`~napari_vbmd.segmentation.postprocess.keep_largest_component`)."""
    inside = as_inside(mask)
    out = inside.copy()
    part = _slices(inside, z)
    out[part.start:part.stop] = keep_largest_component(inside[part.start:part.stop])
    return out.astype(np.uint8)


def erase_slices(mask, z: int, lower: bool) -> np.ndarray:
    """Erase the mask on every slice numbered below ``z`` (``lower``) or above it; slice ``z`` stays. The cut a
    mask carried across the joint into the phalanx needs (the both-ends and joint-space refusals): one
    operation, where the eraser would take a stroke on each slice."""
    inside = as_inside(mask)
    z = _check_slice(inside, z)
    out = inside.copy()
    if lower:
        out[:z] = False
    else:
        out[z + 1:] = False
    return out.astype(np.uint8)


def smooth_contour(mask, z: int | None = None, sigma_px: float = 1.5) -> np.ndarray:
    """Smooth the contour of slice ``z`` (or every slice): Gaussian blur, then threshold at one half.

    Corners and one-pixel spurs go; a straight edge stays where it is.
    """
    if not (np.isfinite(sigma_px) and sigma_px > 0):
        raise VbmdError(f"smoothing width must be a positive number of pixels, got {sigma_px!r}")
    inside = as_inside(mask)
    out = inside.copy()
    for k in _slices(inside, z):
        if inside[k].any():
            out[k] = ndimage.gaussian_filter(inside[k].astype(np.float32), sigma_px, mode="constant") >= 0.5
    return out.astype(np.uint8)


def copy_slice(mask, source: int, target: int | None = None) -> np.ndarray:
    """Copy slice ``source``'s mask onto ``target`` (default: the next slice), replacing it."""
    inside = as_inside(mask)
    source = _check_slice(inside, source)
    target = _check_slice(inside, source + 1 if target is None else target)
    out = inside.copy()
    out[target] = inside[source]
    return out.astype(np.uint8)


def _signed_distance(slice_mask: np.ndarray) -> np.ndarray:
    """Positive inside, negative outside (pixels)."""
    inside = ndimage.distance_transform_edt(slice_mask)
    outside = ndimage.distance_transform_edt(~slice_mask)
    return inside - outside


def interpolate_slices(mask, first: int, last: int) -> np.ndarray:
    """Fill the slices strictly between ``first`` and ``last`` from those two (shape-based:
    linear interpolation of their signed distance maps), replacing what was there."""
    inside = as_inside(mask)
    a, b = sorted((_check_slice(inside, first), _check_slice(inside, last)))
    if b - a < 2:
        raise VbmdError(f"slices {a} and {b} have no slices between them to interpolate")
    if not inside[a].any() or not inside[b].any():
        raise VbmdError(f"both slices must hold mask to interpolate between them (slices {a} and {b})")
    da, db = _signed_distance(inside[a]), _signed_distance(inside[b])
    out = inside.copy()
    for k in range(a + 1, b):
        t = (k - a) / (b - a)
        out[k] = (1 - t) * da + t * db > 0
    return out.astype(np.uint8)


def changed_voxels(before, after) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """(indices, new values) where ``after`` differs from ``before``: what an undo step records."""
    before, after = np.asarray(before), np.asarray(after)
    if before.shape != after.shape:
        raise VbmdError(f"mask shapes differ: {before.shape} and {after.shape}")
    indices = np.nonzero(before != after)
    return indices, after[indices]


@dataclass
class CorrectionStats:
    voxels_added: int
    voxels_removed: int
    d100_before: float | None
    d100_after: float | None
    slices_changed: list[int] = field(default_factory=list)

    @property
    def d100_change(self) -> float | None:
        if self.d100_before is None or self.d100_after is None:
            return None
        return self.d100_after - self.d100_before

    def to_dict(self) -> dict:
        return {
            "voxels_added": self.voxels_added,
            "voxels_removed": self.voxels_removed,
            "d100_before_mg_ha_cm3": self.d100_before,
            "d100_after_mg_ha_cm3": self.d100_after,
            "d100_change_mg_ha_cm3": self.d100_change,
            "slices_changed": list(self.slices_changed),
        }


def correction_stats(original, final, d100_before: float | None = None,
                     d100_after: float | None = None) -> CorrectionStats:
    """How much ``final`` differs from ``original`` (voxel counts, the slices touched)."""
    a, b = as_inside(original), as_inside(final)
    if a.shape != b.shape:
        raise VbmdError(f"mask shapes differ: {a.shape} and {b.shape}")
    added = b & ~a
    removed = a & ~b
    slices = np.flatnonzero((added | removed).any(axis=(1, 2)))
    return CorrectionStats(int(added.sum()), int(removed.sum()), d100_before, d100_after, [int(z) for z in slices])
