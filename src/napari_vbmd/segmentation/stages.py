"""The stages every segmentation goes through, in order; the pipeline, training (``prepare_case``,
validation), threshold calibration and the benchmarks all call these, so what a model is trained and
validated on is what it is run on.

``to_working(scan, box, hand, model)``
    densities (mg HA/cm³) of the crop ``box``, a left hand mirrored to a right one, resampled to the
    model's working grid (in-plane; along z too for 3D networks): a :class:`Working`.
``infer(model, work, ...)``
    the model's probabilities on the working grid (networks: z-score, slice context, batches).
``from_working(probability, work)``
    probabilities back on the crop's native grid, mirrored back, as uint8 0..255.
``finish(probability, scan, box, ...)``
    threshold, hole filling, the MC2 component, boundary refinement: the crop's mask.
``place(crop_mask, scan, box, voi_mm)``
    the crop's mask on the scan's exact grid, optionally cut to the standard VOI.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import VbmdError
from ..scan import Scan
from . import postprocess as post
from .joint import separate_at_joint, separate_at_joint_space
from .models import check_cancel
from .parallel import run_chunks
from .preprocess import Box, density_block, resample_slices, resample_volume, working_size

#: native slices converted and resampled at once (bounds the memory of a whole field of view)
CHUNK = 16


@dataclass
class Working:
    """A crop on the working grid. For 2D models ``data`` holds the native slices ``first`` ..
    ``first + len(data)`` (which may reach beyond the box for slice context, within ``context``);
    for 3D models it is the box resampled along z too."""

    data: np.ndarray  # float32 (z, h, w) densities, right-hand oriented
    box: Box
    mirrored: bool
    spacing: tuple[float, float, float]  # mm of the working grid (z is native for 2D)
    dims: int
    first: int  # scan slice index of data[0] (2D)
    context: tuple[int, int]  # [start, stop) scan slices that slice context is clamped to
    timings: dict = field(default_factory=dict)
    findings: dict = field(default_factory=dict)  # what the model noticed beside its answer (the classical method)

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.data.shape[1]), int(self.data.shape[2])

    def output(self) -> np.ndarray:
        """The working slices the model answers for (the box's own, without extra context)."""
        if self.dims == 3:
            return self.data
        return self.data[self.box.z0 - self.first : self.box.z1 - self.first]


@dataclass(frozen=True)
class WorkingGrid:
    """The working grid of a model that is not built yet (training data): spacing (mm) and dims."""

    spacing_mm: tuple[float, float, float]
    dims: int = 2
    config = None  # no slice context: a training case is its whole box

    def working_spacing(self, native_spacing) -> tuple[float, float, float]:
        z = float(self.spacing_mm[0]) if self.dims == 3 else float(native_spacing[0])
        return z, float(self.spacing_mm[1]), float(self.spacing_mm[2])


def _mirror(block: np.ndarray, mirrored: bool) -> np.ndarray:
    return block[..., ::-1] if mirrored else block


def working_grid(scan: Scan, box: Box, spacing) -> tuple[int, int, int]:
    """(z, h, w) of ``box`` at ``spacing`` mm (a 2D model's z is the native one)."""
    nz, h, w = box.shape
    return (working_size(nz, scan.spacing[0], spacing[0]), working_size(h, scan.spacing[1], spacing[1]),
            working_size(w, scan.spacing[2], spacing[2]))


def resample_to_working(block: np.ndarray, work_hw: tuple[int, int], mirrored: bool, chunk: int = CHUNK) -> np.ndarray:
    """A native crop (z, h, w) of densities or mask fractions to the working grid in-plane (float32)."""
    out = np.empty((block.shape[0], *work_hw), dtype=np.float32)
    for start in range(0, block.shape[0], chunk):
        out[start : start + chunk] = resample_slices(_mirror(block[start : start + chunk], mirrored), work_hw)
    return out


def to_working(scan: Scan, box: Box, hand: str, model, context: tuple[int, int] | None = None,
               cancel=None, threads: int | None = None) -> Working:
    """The crop ``box`` of ``scan`` on ``model``'s working grid; ``context`` (scan slices [start, stop),
    default the box's) is where a 2D model with slice context may take neighbours from."""
    if hand not in ("left", "right"):
        raise VbmdError(f"hand must be left or right here, got {hand!r}")
    t = time.perf_counter()
    mirrored = hand == "left"
    spacing = model.working_spacing(scan.spacing)
    wz, wh, ww = working_grid(scan, box, spacing)
    context = context or (box.z0, box.z1)
    if model.dims == 3:
        first, last = box.z0, box.z1
    else:
        reach = _context_reach(model, scan.spacing[0])
        first, last = max(context[0], box.z0 - reach[0]), min(context[1], box.z1 + reach[1])
    data = np.empty((last - first, wh, ww), dtype=np.float32)

    def part(lo: int, hi: int) -> None:
        check_cancel(cancel)
        block = density_block(scan, (slice(first + lo, first + hi), slice(box.y0, box.y1), slice(box.x0, box.x1)))
        data[lo:hi] = resample_slices(_mirror(block, mirrored), (wh, ww))

    run_chunks(part, last - first, threads, step=CHUNK)
    if model.dims == 3 and wz != data.shape[0]:
        data = resample_volume(data, (wz, wh, ww))
    return Working(data, box, mirrored, spacing, model.dims, first, context,
                   {"preprocess": time.perf_counter() - t})


def _context_reach(model, spacing_z: float) -> tuple[int, int]:
    """How many slices before and after a slice its context reaches (0, 0 without context)."""
    from .preprocess import context_offsets

    config = getattr(model, "config", None)
    if config is None:
        return 0, 0
    offsets = context_offsets(config.context_mm, spacing_z)
    return max(0, -int(offsets.min())), max(0, int(offsets.max()))


def infer(model, work: Working, progress=None, cancel=None, batch_size: int | None = None) -> np.ndarray:
    """``model``'s probabilities (float32 0..1) on the working grid of the box's slices."""
    t = time.perf_counter()
    probability = model.predict(work, batch_size=batch_size, progress=progress, cancel=cancel)
    work.timings["inference"] = time.perf_counter() - t
    return probability


def from_working(probability: np.ndarray, work: Working, chunk: int = CHUNK, threads: int | None = None) -> np.ndarray:
    """Working-grid probabilities back on the crop's native grid: uint8 0..255 (255 = 1.0); slices
    spread over ``threads`` threads."""
    t = time.perf_counter()
    nz, h, w = work.box.shape
    if probability.shape[0] != nz:
        probability = resample_volume(probability, (nz, *probability.shape[1:]))
    out = np.empty((nz, h, w), dtype=np.uint8)

    def part(start: int, stop: int) -> None:
        native = _mirror(resample_slices(probability[start:stop], (h, w)), work.mirrored)
        out[start:stop] = np.clip(np.rint(native * 255), 0, 255).astype(np.uint8)

    run_chunks(part, nz, threads, step=chunk)
    work.timings["postprocess"] = work.timings.get("postprocess", 0.0) + time.perf_counter() - t
    return out


def finish(probability: np.ndarray, scan: Scan, box: Box, threshold: float, hole_filling: str = "fill",
           band_mm: float = 0.0, cancel=None, threads: int | None = None, notes: dict | None = None,
           edge_level: float = post.DEFAULT_EDGE_LEVEL) -> np.ndarray:
    """The crop's mask (bool): threshold, hole filling per slice, the largest 3-D component, MC2 parted
    from the proximal phalanx where the mask runs on across the joint (:mod:`.joint`; the cut is put in
    ``notes["joint_cut"]``) and, for a positive ``band_mm``, the boundary moved onto the scan's
    edge within that band (the half-maximum, or ``edge_level`` of the way from dark to bright). The
    slice-by-slice steps run on ``threads`` threads (the same voxels whatever the number)."""
    check_cancel(cancel)
    crop_mask = probability >= np.uint8(round(threshold * 255))
    if hole_filling == "fill":
        crop_mask = post.fill_holes_per_slice(crop_mask, threads)
    elif hole_filling == "active_contour":
        crop_mask = post.active_contour_per_slice(crop_mask, probability.astype(np.float32) / 255.0)
    elif hole_filling != "none":
        raise VbmdError(f"hole filling must be one of {', '.join(post.HOLE_FILLING)}, got {hole_filling!r}")
    crop_mask = post.keep_largest_component(crop_mask)
    crop_mask, cut = separate_at_joint(crop_mask, lambda z0, z1: density_block(
        scan, (slice(box.z0 + z0, box.z0 + z1), slice(box.y0, box.y1), slice(box.x0, box.x1))), scan.spacing)
    if notes is not None:
        notes["joint_cut"] = cut.to_dict(box.z0) if cut is not None else None
    if band_mm > 0 and crop_mask.any():
        check_cancel(cancel)
        crop_mask = _refine(scan, box, crop_mask, band_mm, threads, edge_level)
    crop_mask, space_cut = separate_at_joint_space(crop_mask, lambda region: density_block(scan, box.in_scan(region)),
                                                   scan.spacing)
    if notes is not None and space_cut is not None:
        notes["joint_cut"] = _after(notes.get("joint_cut"), space_cut.to_dict(box.z0))
    return crop_mask


def _after(waist_cut: dict | None, space_cut: dict) -> dict:
    """The joint-space cut's record, with a waist cut made before it (rare: both in one mask) folded in."""
    if waist_cut is None:
        return space_cut
    return {**space_cut, "removed_voxels": waist_cut["removed_voxels"] + space_cut["removed_voxels"],
            "description": f"{waist_cut['description']}; then {space_cut['description']}"}


def _refine(scan: Scan, box: Box, crop_mask: np.ndarray, band_mm: float, threads: int | None = None,
            edge_level: float = post.DEFAULT_EDGE_LEVEL) -> np.ndarray:
    """Boundary refinement on MC2's own bounding box within the crop (densities of that box only).
    The refinement works slice by slice, so groups of slices go to the threads side by side."""
    sub = post.refinement_region(crop_mask, scan.spacing, band_mm)
    mask, density = crop_mask[sub], density_block(scan, box.in_scan(sub))
    refined = np.zeros(mask.shape, dtype=bool)

    def part(first: int, last: int) -> None:
        refined[first:last] = post.refine_boundary(mask[first:last], density[first:last], scan.spacing, band_mm,
                                                   edge_level)

    run_chunks(part, mask.shape[0], threads)
    out = np.zeros_like(crop_mask, dtype=bool)
    out[sub] = post.keep_largest_component(refined)
    return out


def place(crop_mask: np.ndarray, scan: Scan, box: Box, voi_mm: float | None = None):
    """(uint8 mask on the scan's grid, VOI [start, stop) or None, [start, stop) of slices holding MC2).
    Only MC2's own bounding box is written into the (lazily zeroed) scan-sized mask."""
    full = np.zeros(scan.shape, dtype=np.uint8)
    inner = post.bounding_box(crop_mask)
    if inner is None:
        return full, None, None
    in_scan = box.in_scan(inner)
    full[in_scan] = crop_mask[inner]
    voi = None
    if voi_mm is not None:
        full_bool, voi = post.standard_voi(full.astype(bool), scan.spacing[0], voi_mm)
        full = full_bool.astype(np.uint8)
        present = np.flatnonzero(post.slice_areas(full[voi[0] : voi[1]])) + voi[0]
    else:
        present = np.flatnonzero(post.slice_areas(crop_mask[inner])) + in_scan[0].start
    used = (int(present[0]), int(present[-1]) + 1) if present.size else None
    return full, voi, used
