"""Scan in, MC2 mask out: the segmentation pipeline.

1. find the bone region (one cheap pass) and crop to it, so a 1536 x 1536 field of view costs no
   more than a cropped AIM; restrict to the user's slice range;
2. densities (mg HA/cm³) of the crop, left hands mirrored to right along x, in-plane resampling to
   the model's working spacing (mm, from the checkpoint), z-score with the checkpoint's statistics;
3. inference in batches of slices (2D) or one pass (3D), mixed precision on GPU, progress after
   each batch and a cancel check between batches;
4. probabilities resampled back onto the crop's native grid, *then* thresholded; mirrored back;
   hole filling per slice, the MC2 component; when the checkpoint (or the caller) asks for it, the
   boundary is moved within a narrow band onto the scan's half-maximum edge
   (:func:`~napari_vbmd.segmentation.postprocess.refine_boundary`); optional standard VOI; the crop
   is put back into a mask on the scan's exact grid.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import CancelledError, VbmdError
from ..scan import Scan
from . import postprocess as post
from .checkpoint import ModelConfig
from .hand import HandDecision, require_hand, resolve_hand
from .preprocess import (
    Box,
    context_indices,
    context_offsets,
    density_block,
    find_bone_box,
    pad_to_multiple,
    resample_slices,
    resample_volume,
    working_size,
)
from .registry import LoadedModel, load_model, resolve_device

Progress = Callable[[int, int, str], None]


@dataclass
class SegmentationResult:
    mask: Scan  # uint8 0/1 on the scan's exact grid
    probability: np.ndarray | None  # uint8 0..255 on the crop `box` (native grid), or None
    box: Box  # where the crop lies in the scan
    timings: dict[str, float]  # seconds: read, preprocess, inference, postprocess
    model: str
    device: str
    hand: str  # the hand the scan was treated as ("left" / "right")
    hand_source: str  # "argument", "manifest", "header" or "image" (detected)
    slice_range: tuple[int, int] | None  # [start, stop) of slices holding MC2
    voi: tuple[int, int] | None = None  # [start, stop) of the standard VOI when one was asked
    threshold: float = 0.5  # the probability threshold the mask was cut at
    extra: dict = field(default_factory=dict)
    hand_confidence: float | None = 1.0  # 1.0 when given (argument, manifest, header); the detector's otherwise
    hand_reason: str = ""  # the evidence for the hand, in one line

    @property
    def hand_decision(self) -> HandDecision:
        return HandDecision(self.hand, self.hand_source, self.hand_confidence, self.hand_reason)


def _check_cancel(cancel):
    if cancel is not None and cancel():
        raise CancelledError("segmentation cancelled")


def _resolve_hand(hand, scan: Scan, cancel) -> HandDecision:
    """The hand to segment ``scan`` as (see :mod:`.hand`); HandUndecidedError when nothing decides it."""
    if isinstance(hand, HandDecision):
        decision = hand
    else:
        if hand not in (None, "auto", "left", "right"):
            raise VbmdError(f"hand must be auto, left or right, got {hand!r}")
        decision = resolve_hand(scan, hand, cancel=cancel)
    require_hand(decision, scan)
    return decision


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    if not threads:
        yield
        return
    if threads < 1:
        raise VbmdError(f"threads must be at least 1, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def segment(
    scan: Scan | str | Path,
    model: str | Path | LoadedModel = "default",
    device: str = "auto",
    hand: str | HandDecision | None = "auto",
    slice_range: tuple[int, int] | str | None = None,
    voi_mm: float | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    threads: int | None = None,
    hole_filling: str = "fill",
    batch_size: int | None = None,
    keep_probability: bool = False,
    boundary_band_mm: float | None = None,
) -> SegmentationResult:
    """Segment MC2 in ``scan`` (a Scan or a path); see the module docstring for the steps.

    ``hand``: "left" or "right" (the user's word), "auto" (the header's, else the image's: see
    :func:`~napari_vbmd.segmentation.hand.resolve_hand`) or a :class:`HandDecision` made earlier
    (e.g. with a batch manifest's hand). When nothing decides it, :class:`HandUndecidedError` is
    raised before any heavy work.

    ``boundary_band_mm``: None uses the checkpoint's setting; 0 keeps the network's boundary; a
    positive value refines it within that band (not used by the classical method, which snaps its
    contour to the edges itself).
    """
    timings = {"read": 0.0, "preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
    if not isinstance(scan, Scan):
        from ..io import read_scan

        t = time.perf_counter()
        scan = read_scan(scan)
        timings["read"] = time.perf_counter() - t
    if hole_filling not in post.HOLE_FILLING:
        raise VbmdError(f"hole filling must be one of {', '.join(post.HOLE_FILLING)}, got {hole_filling!r}")
    if scan.kind != "image":
        raise VbmdError("segmentation needs a greyscale image, not a mask", scan.source)
    if boundary_band_mm is not None:
        boundary_band_mm = post.check_boundary_band(boundary_band_mm)
    t = time.perf_counter()
    decision = _resolve_hand(hand, scan, cancel)
    hand_used, hand_source = decision.hand, decision.source
    timings["preprocess"] += time.perf_counter() - t

    with _torch_threads(threads):
        t = time.perf_counter()
        if isinstance(model, LoadedModel):
            loaded = model
        elif str(model) == "classical":
            loaded = None
            resolve_device(device)  # a bad device request is still an error
        else:
            loaded = load_model(model, device)
        config = loaded.config if loaded is not None else None
        margin = config.crop_margin_mm if config is not None else 4.0

        user_range = post.parse_slice_range(slice_range, scan.shape[0]) if slice_range is not None else None
        box = find_bone_box(scan, margin_mm=margin)
        bone_z = (box.z0, box.z1)  # slice context reaches across the whole bone region, whatever the range
        if user_range is not None:
            z0, z1 = max(box.z0, user_range[0]), min(box.z1, user_range[1])
            if z1 <= z0:
                raise VbmdError(f"no bone in the slice range {user_range[0]}:{user_range[1]}", scan.source)
            box = Box(z0, z1, box.y0, box.y1, box.x0, box.x1)
        timings["preprocess"] += time.perf_counter() - t
        mirror = hand_used == "left"

        if loaded is None:
            from .classical import classical_probability

            probability, crop_timings = _run_whole_volume(
                scan, box, mirror, None, None, progress, cancel, classical=classical_probability
            )
            threshold = 0.5
            model_name, device_name = "classical", "cpu"
        elif config.dims == 2:
            probability, crop_timings = _run_2d(scan, box, mirror, loaded, progress, cancel, batch_size, bone_z)
            threshold = config.threshold
            model_name, device_name = loaded.name, str(loaded.device)
        else:
            probability, crop_timings = _run_whole_volume(scan, box, mirror, loaded, config, progress, cancel)
            threshold = config.threshold
            model_name, device_name = loaded.name, str(loaded.device)
        for key, value in crop_timings.items():
            timings[key] += value

        t = time.perf_counter()
        _check_cancel(cancel)
        crop_mask = probability >= np.uint8(round(threshold * 255))
        if hole_filling == "fill":
            crop_mask = post.fill_holes_per_slice(crop_mask)
        elif hole_filling == "active_contour":
            crop_mask = post.active_contour_per_slice(crop_mask, probability.astype(np.float32) / 255.0)
        crop_mask = post.keep_largest_component(crop_mask)
        if loaded is None:  # the classical method snaps its own contour
            band = 0.0
        else:
            band = boundary_band_mm if boundary_band_mm is not None else config.boundary_band_mm
        if band > 0 and crop_mask.any():
            _check_cancel(cancel)
            crop_mask = _refine_in_place(scan, box, crop_mask, band)
        if not crop_mask.any():
            raise VbmdError("no MC2 found in the scan (the model marked no voxel as bone)", scan.source)
        voi = None
        full = np.zeros(scan.shape, dtype=np.uint8)
        full[box.slices] = crop_mask
        if voi_mm is not None:
            full_bool, voi = post.standard_voi(full.astype(bool), scan.spacing[0], voi_mm)
            full = full_bool.astype(np.uint8)
        present = np.flatnonzero(post.slice_areas(full))
        used_range = (int(present[0]), int(present[-1]) + 1) if present.size else None
        mask = scan.with_data(full, kind="mask", unit="unknown", calibration=scan.calibration, hand=hand_used)
        mask.header = dict(scan.header)
        mask.header["segmentation"] = {"model": model_name, "hand": hand_used, "hand_source": hand_source,
                                       "hand_confidence": decision.confidence, "box": box.to_list(),
                                       "boundary_band_mm": band}
        timings["postprocess"] += time.perf_counter() - t
        if progress:
            progress(1, 1, "done")
    return SegmentationResult(
        mask=mask,
        probability=probability if keep_probability else None,
        box=box,
        timings=timings,
        model=model_name,
        device=device_name,
        hand=hand_used,
        hand_source=hand_source,
        slice_range=used_range,
        voi=voi,
        threshold=float(threshold),
        hand_confidence=decision.confidence,
        hand_reason=decision.reason,
    )


def _refine_in_place(scan: Scan, box: Box, crop_mask: np.ndarray, band_mm: float) -> np.ndarray:
    """Boundary refinement on MC2's own bounding box within the crop (densities of that box only)."""
    sub = post.refinement_region(crop_mask, scan.spacing, band_mm)
    in_scan = tuple(slice(start + s.start, start + s.stop) for start, s in zip((box.z0, box.y0, box.x0), sub))
    out = np.zeros_like(crop_mask, dtype=bool)
    out[sub] = post.keep_largest_component(
        post.refine_boundary(crop_mask[sub], density_block(scan, in_scan), scan.spacing, band_mm))
    return out


def _run_2d(scan: Scan, box: Box, mirror: bool, loaded: LoadedModel, progress, cancel, batch_size,
            context_range: tuple[int, int]):
    """Batched 2D inference over the crop; returns (uint8 probability on the crop, timings).

    A network with slice context (``config.context_mm``) gets, for each slice, the slices at those
    offsets as input channels; neighbours are taken from ``context_range`` (scan slice indices
    [start, stop) of the bone region, which holds the crop) and clamped to it, as training clamps them
    to its crop. Every slice a batch reaches is prepared once, in order, and kept until no later batch
    reaches back to it.
    """
    from .networks import size_multiple

    config = loaded.config
    net, device = loaded.network, loaded.device
    timings = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
    nz, h, w = box.shape
    wh = working_size(h, scan.spacing[1], config.spacing_mm[1])
    ww = working_size(w, scan.spacing[2], config.spacing_mm[2])
    multiple = size_multiple(net, config.architecture)
    pad_value = (0.0 - config.mean) / config.std
    offsets = context_offsets(config.context_mm, scan.spacing[0])
    lo, hi = context_range
    if batch_size is None:
        batch_size = 32 if device.type != "cpu" else 8
    probability = np.zeros(box.shape, dtype=np.uint8)
    prepared: dict[int, np.ndarray] = {}  # scan slice index -> z-scored working slice
    next_unprepared = lo

    def prepare(z0: int, z1: int) -> None:
        block = density_block(scan, (slice(z0, z1), slice(box.y0, box.y1), slice(box.x0, box.x1)))
        if mirror:
            block = block[..., ::-1]
        work = resample_slices(block, (wh, ww))
        work -= config.mean
        work /= config.std
        for i, z in enumerate(range(z0, z1)):
            prepared[z] = work[i]

    starts = list(range(0, nz, batch_size))
    total = len(starts) + 1
    for step, start in enumerate(starts, 1):
        _check_cancel(cancel)
        t = time.perf_counter()
        stop = min(nz, start + batch_size)
        index = context_indices(np.arange(box.z0 + start, box.z0 + stop), offsets, lo, hi)
        first, last = int(index.min()), int(index.max()) + 1  # both only grow from batch to batch
        for z in [z for z in prepared if z < first]:
            del prepared[z]
        for z0 in range(max(first, next_unprepared), last, batch_size):  # native blocks of one batch at most
            prepare(z0, min(last, z0 + batch_size))
        next_unprepared = max(next_unprepared, last)
        work = np.stack([np.stack([prepared[z] for z in row]) for row in index.tolist()])
        work, _ = pad_to_multiple(work, multiple, axes=(2, 3), value=pad_value)
        tensor = torch.from_numpy(np.ascontiguousarray(work)).to(device)
        timings["preprocess"] += time.perf_counter() - t
        t = time.perf_counter()
        with torch.inference_mode(), _autocast(device):
            logits = net(tensor)
        prob = torch.sigmoid(logits.float())[:, 0, :wh, :ww].cpu().numpy()
        timings["inference"] += time.perf_counter() - t
        t = time.perf_counter()
        prob = resample_slices(prob, (h, w))
        if mirror:
            prob = prob[..., ::-1]
        probability[start:stop] = np.clip(np.rint(prob * 255), 0, 255).astype(np.uint8)
        timings["postprocess"] += time.perf_counter() - t
        if progress:
            progress(step, total, f"slices {box.z0 + start}-{box.z0 + stop - 1}")
    return probability, timings


def _run_whole_volume(scan: Scan, box: Box, mirror: bool, loaded, config: ModelConfig | None, progress, cancel,
                      classical=None, chunk: int = 16):
    """3D networks and the classical method: the whole crop at the working grid at once."""
    timings = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
    nz, h, w = box.shape
    if classical is not None:
        from .classical import CLASSICAL_SPACING_MM

        spacing = (scan.spacing[0], CLASSICAL_SPACING_MM, CLASSICAL_SPACING_MM)
    else:
        spacing = config.spacing_mm
    wz = working_size(nz, scan.spacing[0], spacing[0]) if classical is None else nz
    wh = working_size(h, scan.spacing[1], spacing[1])
    ww = working_size(w, scan.spacing[2], spacing[2])
    t = time.perf_counter()
    work = np.empty((nz, wh, ww), dtype=np.float32)
    for start in range(0, nz, chunk):
        _check_cancel(cancel)
        stop = min(nz, start + chunk)
        block = density_block(scan, (slice(box.z0 + start, box.z0 + stop), slice(box.y0, box.y1), slice(box.x0, box.x1)))
        if mirror:
            block = block[..., ::-1]
        work[start:stop] = resample_slices(block, (wh, ww))
    if wz != nz:
        work = resample_volume(work, (wz, wh, ww))
    timings["preprocess"] += time.perf_counter() - t
    if progress:
        progress(1, 3, "pre-processed")
    _check_cancel(cancel)
    t = time.perf_counter()
    if classical is not None:
        prob = classical(work, spacing)
    else:
        from .networks import size_multiple

        net, device = loaded.network, loaded.device
        work = (work - config.mean) / config.std
        work, _ = pad_to_multiple(work, size_multiple(net, config.architecture), axes=(0, 1, 2),
                                  value=(0.0 - config.mean) / config.std)
        with torch.inference_mode(), _autocast(device):
            logits = net(torch.from_numpy(np.ascontiguousarray(work))[None, None].to(device))
        prob = torch.sigmoid(logits.float())[0, 0, :wz, :wh, :ww].cpu().numpy()
    timings["inference"] += time.perf_counter() - t
    if progress:
        progress(2, 3, "inferred")
    t = time.perf_counter()
    if wz != nz:
        prob = resample_volume(prob, (nz, wh, ww))
    probability = np.zeros(box.shape, dtype=np.uint8)
    for start in range(0, nz, chunk):
        stop = min(nz, start + chunk)
        p = resample_slices(prob[start:stop], (h, w))
        if mirror:
            p = p[..., ::-1]
        probability[start:stop] = np.clip(np.rint(p * 255), 0, 255).astype(np.uint8)
    timings["postprocess"] += time.perf_counter() - t
    return probability, timings
