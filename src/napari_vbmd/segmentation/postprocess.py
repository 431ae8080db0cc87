"""Post-processing of a predicted MC2 mask: holes, the MC2 component, slice ranges and the VOI."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import VbmdError

HOLE_FILLING = ("fill", "active_contour", "none")


def fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    """Exact per-slice hole filling (a hole = background not connected to the slice's border)."""
    out = np.empty_like(mask, dtype=bool)
    for z in range(mask.shape[0]):
        out[z] = ndimage.binary_fill_holes(mask[z]) if mask[z].any() else False
    return out


def active_contour_per_slice(
    mask: np.ndarray, probability: np.ndarray, iterations: int = 10, smoothing: int = 2
) -> np.ndarray:
    """The study's option: a morphological (Chan-Vese) active contour on each slice's probability,
    started from the thresholded mask, then an exact fill of the holes that remain."""
    from skimage.segmentation import morphological_chan_vese

    out = np.zeros_like(mask, dtype=bool)
    for z in range(mask.shape[0]):
        if not mask[z].any():
            continue
        evolved = morphological_chan_vese(
            probability[z].astype(np.float32), num_iter=iterations, init_level_set=mask[z].astype(np.int8),
            smoothing=smoothing,
        )
        out[z] = ndimage.binary_fill_holes(evolved.astype(bool))
    return out


def keep_largest_component(mask: np.ndarray) -> np.ndarray:
    """The MC2 heuristic for network output: the largest 3-D connected component (6-connected).

    The network is trained to mark MC2 only; stray islands (a neighbouring bone's edge, noise) are
    smaller than the bone itself.
    """
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def slice_areas(mask: np.ndarray) -> np.ndarray:
    return mask.reshape(mask.shape[0], -1).sum(axis=1)


def joint_end(mask: np.ndarray) -> tuple[int, int]:
    """(index of MC2's distal slice = the joint surface, direction +1/-1 pointing proximally).

    The metacarpal is cut by the scan's field of view proximally and ends in its head at the joint:
    the distal end is the end of the mask that stops inside the scan. When both or neither end
    touches the scan's first/last slice, the end whose third of the bone holds the widest slice is
    the head (the head is wider than the shaft).
    """
    areas = slice_areas(mask)
    present = np.flatnonzero(areas)
    if present.size == 0:
        raise VbmdError("the mask is empty: no MC2 to take a volume of interest from")
    first, last = int(present[0]), int(present[-1])
    touches_start = first == 0
    touches_end = last == mask.shape[0] - 1
    if touches_start and not touches_end:
        return last, -1
    if touches_end and not touches_start:
        return first, +1
    third = max(1, (last - first + 1) // 3)
    head_at_end = areas[last - third + 1 : last + 1].max() >= areas[first : first + third].max()
    return (last, -1) if head_at_end else (first, +1)


def standard_voi(mask: np.ndarray, spacing_z: float, length_mm: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Keep ``length_mm`` of MC2 proximal from its joint surface; returns (mask, (start, stop))."""
    if not (np.isfinite(length_mm) and length_mm > 0):
        raise VbmdError(f"the VOI length must be a positive number of mm, got {length_mm!r}")
    joint, direction = joint_end(mask)
    n = max(1, int(round(length_mm / spacing_z)))
    if direction < 0:
        start, stop = max(0, joint - n + 1), joint + 1
    else:
        start, stop = joint, min(mask.shape[0], joint + n)
    out = np.zeros_like(mask, dtype=bool)
    out[start:stop] = mask[start:stop]
    return out, (start, stop)


def parse_slice_range(text: str | None, n_slices: int) -> tuple[int, int] | None:
    """'A:B' (Python-style, B exclusive, either may be empty or negative) -> (start, stop)."""
    if text is None:
        return None
    if isinstance(text, (tuple, list)):
        start, stop = text
    else:
        parts = str(text).split(":")
        if len(parts) != 2:
            raise VbmdError(f"slice range must look like A:B, got {text!r}")
        try:
            start = int(parts[0]) if parts[0].strip() else 0
            stop = int(parts[1]) if parts[1].strip() else n_slices
        except ValueError:
            raise VbmdError(f"slice range must be integers A:B, got {text!r}") from None
    start, stop, _ = slice(int(start), int(stop)).indices(n_slices)
    if stop <= start:
        raise VbmdError(f"slice range {text!r} selects no slice of the {n_slices} in the scan")
    return start, stop
