"""Post-processing of a predicted MC2 mask: holes, the MC2 component, slice ranges and the VOI."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import VbmdError

HOLE_FILLING = ("fill", "active_contour", "none")
#: what ``stages.finish`` does to a probability map, kept with a batch's results: records made by another
#: version are made again (2: the mask parted from the proximal phalanx at a joint waist, :mod:`.joint`)
POSTPROCESS_VERSION = 2

#: boundary refinement: Gaussian smoothing of the densities before the edge is found (mm)
EDGE_SMOOTHING_MM = 0.05
#: boundary refinement: side of the square whose darkest and brightest smoothed densities define the
#: local half-maximum (mm); wide enough to reach from soft tissue into the cortex
EDGE_WINDOW_MM = 1.0
#: the widest band (mm) a refinement may move the boundary by; beyond it the network's shape is lost
MAX_BOUNDARY_BAND_MM = 2.0
#: boundary refinement: where between the window's darkest and brightest smoothed density the edge is put
#: (0.5: the half-maximum); a checkpoint may set its own, chosen on validation data like its band
DEFAULT_EDGE_LEVEL = 0.5
#: the levels a checkpoint may set: outside them the edge is no longer between soft tissue and cortex
EDGE_LEVEL_RANGE = (0.3, 0.8)


#: in-plane 4-connectivity, no link between slices: one ``ndimage.label`` call labels every slice apart
_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)


def bounding_box(mask: np.ndarray, pad: int = 0) -> tuple[slice, ...] | None:
    """Slices of the smallest box holding ``mask``'s True voxels, grown by ``pad`` in-plane (None: empty)."""
    box = []
    for axis in range(mask.ndim):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if not present.size:
            return None
        grow = pad if axis > 0 else 0
        box.append(slice(max(0, int(present[0]) - grow), min(mask.shape[axis], int(present[-1]) + 1 + grow)))
    return tuple(box)


def fill_holes_per_slice(mask: np.ndarray, threads: int | None = 1) -> np.ndarray:
    """Exact per-slice hole filling (a hole = background not 4-connected to the slice's border), as
    ``ndimage.binary_fill_holes`` on each slice, computed on the mask's bounding box in one labelling
    per group of slices (groups on ``threads`` threads): the background of every slice, with a ring
    of background around it, is labelled (no links between slices); what is not the ring's
    component is a hole."""
    from .parallel import run_chunks

    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, dtype=bool)
    box = bounding_box(mask)
    if box is None:
        return out
    inside, target = mask[box], out[box]

    def part(first: int, last: int) -> None:
        sub = np.pad(inside[first:last], ((0, 0), (1, 1), (1, 1)))
        labels, _ = ndimage.label(~sub, _IN_PLANE)
        # each slice's ring (all background) is one component, the outside; everything else (the
        # mask, label 0, and background the ring does not reach) is filled
        outside = labels[:, 0, 0]
        np.not_equal(labels[:, 1:-1, 1:-1], outside[:, None, None], out=target[first:last])

    run_chunks(part, inside.shape[0], threads)
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


def check_boundary_band(band_mm) -> float:
    try:
        band = float(band_mm)
    except (TypeError, ValueError):
        band = float("nan")
    if not (np.isfinite(band) and 0.0 <= band <= MAX_BOUNDARY_BAND_MM):
        raise VbmdError(f"the boundary refinement band must be between 0 and {MAX_BOUNDARY_BAND_MM:g} mm "
                        f"(0 keeps the network's boundary), got {band_mm!r}")
    return band


def check_edge_level(level) -> float:
    try:
        value = float(level)
    except (TypeError, ValueError):
        value = float("nan")
    low, high = EDGE_LEVEL_RANGE
    if not (np.isfinite(value) and low <= value <= high):
        raise VbmdError(f"the boundary refinement's edge level must be between {low:g} and {high:g} (0.5: the "
                        f"half-maximum), got {level!r}")
    return value


def refinement_region(mask: np.ndarray, spacing, band_mm: float) -> tuple[slice, slice, slice]:
    """The slices of ``mask`` that hold it, and its in-plane bounding box widened by what
    :func:`refine_boundary` reads around it (the band and the half-maximum window)."""
    reach = band_mm + EDGE_WINDOW_MM
    region = []
    for axis, other in ((0, (1, 2)), (1, (0, 2)), (2, (0, 1))):
        present = np.flatnonzero(mask.any(axis=other))
        pad = 0 if axis == 0 else int(np.ceil(reach / float(spacing[axis]))) + 2
        region.append(slice(max(0, present[0] - pad), min(mask.shape[axis], present[-1] + 1 + pad)))
    return tuple(region)


def refine_boundary(mask: np.ndarray, density: np.ndarray, spacing, band_mm: float,
                    edge_level: float = DEFAULT_EDGE_LEVEL) -> np.ndarray:
    """Move the mask's in-plane boundary, within ``band_mm`` of where it is, onto the bone's edge in
    the scan: the local half-maximum of the (lightly smoothed) densities, half-way between the darkest
    and the brightest value within :data:`EDGE_WINDOW_MM` (``edge_level`` 0.5; another level puts the
    edge that fraction of the way from the darkest to the brightest).

    A network working on a 0.3 mm grid cannot place the periosteal surface to the 82 µm of the scan,
    and vBMD is sensitive to exactly that (one voxel of cortex is ~3 % of D100); the half-maximum is
    where a blurred edge between soft tissue and cortex lies. Voxels deeper inside than the band are
    kept, voxels farther out are dropped, so the network still decides what is MC2 and the scan only
    decides where its surface is. Per slice: the band's voxels above the local half-maximum join the
    core, holes are filled (marrow behind the cortex), and only the parts touching the core stay.
    Slices too small to have a core keep the network's boundary. ``band_mm`` 0 returns the mask.

    Every step works on all slices at once with in-plane footprints (the same numbers as slice by
    slice): erosion and dilation by the band's disk as 1-D minimum/maximum filters over the rectangles
    the disk is the union of, one smoothing, one min/max filter, one labelling without links between
    slices.
    """
    band_mm = check_boundary_band(band_mm)
    edge_level = check_edge_level(edge_level)
    mask = np.asarray(mask, dtype=bool)
    if band_mm == 0.0 or not mask.any():
        return mask
    if density.shape != mask.shape:
        raise VbmdError(f"boundary refinement: densities {density.shape} and mask {mask.shape} differ in shape")
    dy, dx = float(spacing[1]), float(spacing[2])
    out = mask.copy()
    region = refinement_region(mask, spacing, band_mm)
    m = mask[region]
    window = (1, 2 * int(round(EDGE_WINDOW_MM / 2 / dy)) + 1, 2 * int(round(EDGE_WINDOW_MM / 2 / dx)) + 1)  # odd
    # every in-plane offset within band_mm: erosion by it keeps the voxels farther than the band from the
    # background, dilation adds those within the band of the mask (what two distance transforms give, faster)
    rectangles = _disk_rectangles(band_mm, dy, dx)
    core = _by_rectangles(m, rectangles, np.logical_and)
    has_core = core.any(axis=(1, 2))
    if not has_core.any():
        return out
    band = _by_rectangles(m, rectangles, np.logical_or) & ~core
    smooth = ndimage.gaussian_filter(density[region].astype(np.float32), (0.0, EDGE_SMOOTHING_MM / dy, EDGE_SMOOTHING_MM / dx))
    brightest = sliding(sliding(smooth, window[1], 1, np.maximum), window[2], 2, np.maximum)
    edge = sliding(sliding(smooth, window[1], 1, np.minimum), window[2], 2, np.minimum)
    if edge_level == 0.5:  # the half-maximum as before, to the last bit
        edge += brightest
        edge *= 0.5
    else:
        edge += np.float32(edge_level) * (brightest - edge)
    del brightest
    refined = fill_holes_per_slice(core | (band & (smooth >= edge)))
    labels, n = ndimage.label(refined, _IN_PLANE)
    touching = np.zeros(n + 1, dtype=bool)
    touching[labels[core]] = True
    touching[0] = False
    refined = touching[labels]
    target = out[region]
    target[has_core] = refined[has_core]
    out[region] = target
    return out


def _disk_rectangles(band_mm: float, dy: float, dx: float) -> list[tuple[int, int]]:
    """Half-sizes (ry, rx) of rectangles whose union is the in-plane disk of radius ``band_mm``."""
    ry = int(band_mm / dy)
    widths = {}
    for oy in range(ry + 1):
        ox = np.arange(0, int(band_mm / dx) + 1)
        inside = (oy * dy) ** 2 + (ox * dx) ** 2 <= band_mm**2 + 1e-12
        if inside.any():
            widths[oy] = int(ox[inside].max())
    # the half-width only shrinks away from the centre row: one rectangle per width, as tall as it reaches
    tallest: dict[int, int] = {}
    for oy, w in widths.items():
        tallest[w] = max(tallest.get(w, 0), oy)
    return [(oy, w) for w, oy in tallest.items()]


def sliding(values: np.ndarray, size: int, axis: int, op, mode: str = "reflect", cval=0) -> np.ndarray:
    """``op`` (np.maximum, np.minimum, np.logical_or ...) over a centred window of odd ``size`` along
    ``axis``: what ``ndimage.maximum_filter1d`` & co. give (``mode`` "reflect" or "constant"), from
    O(log size) whole-array operations instead of a loop over each line."""
    radius = size // 2
    pads = [(0, 0)] * values.ndim
    pads[axis] = (radius, radius)
    if mode == "reflect":
        x = np.pad(values, pads, mode="symmetric")  # scipy's "reflect" is numpy's "symmetric"
    elif mode == "constant":
        x = np.pad(values, pads, mode="constant", constant_values=cval)
    else:
        raise ValueError(f"mode must be reflect or constant, got {mode!r}")
    n = values.shape[axis]

    def part(array, start, length):
        index = [slice(None)] * array.ndim
        index[axis] = slice(start, start + length)
        return array[tuple(index)]

    # spans[k][i] = op over x[i : i + 2**k]; a window of ``size`` is the op of spans of its binary digits
    result, offset, span, width = None, 0, x, 1
    remaining = size
    while remaining:
        if remaining & width:
            piece = part(span, offset, n)
            result = piece.copy() if result is None else op(result, piece, out=result)
            offset += width
            remaining -= width
        if remaining:
            length = span.shape[axis] - width
            span = op(part(span, 0, length), part(span, width, length))
            width *= 2
    return result


def _by_rectangles(mask: np.ndarray, rectangles, op) -> np.ndarray:
    """In-plane erosion (``op`` logical_and) or dilation (logical_or) by the union of the rectangles
    (outside the array counts as background): ``op`` over each rectangle's separable window."""
    out = None
    for ry, rx in rectangles:
        m = sliding(mask, 2 * ry + 1, 1, op, "constant", False)
        m = sliding(m, 2 * rx + 1, 2, op, "constant", False)
        out = m if out is None else op(out, m, out=out)
    return out


def keep_largest_component(mask: np.ndarray) -> np.ndarray:
    """The MC2 heuristic for network output: the largest 3-D connected component (6-connected).

    The network is trained to mark MC2 only; stray islands (a neighbouring bone's edge, noise) are
    smaller than the bone itself. Labelled on the mask's bounding box only.
    """
    mask = np.asarray(mask, dtype=bool)
    box = bounding_box(mask)
    if box is None:
        return mask.copy()
    labels, n = ndimage.label(mask[box])
    if n <= 1:
        return mask.copy()
    if n <= 16:  # a few components: counting each is cheaper than bincount's 64-bit copy of the labels
        sizes = np.array([0] + [np.count_nonzero(labels == k) for k in range(1, n + 1)])
    else:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
    out = np.zeros(mask.shape, dtype=bool)
    out[box] = labels == int(np.argmax(sizes))
    return out


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
