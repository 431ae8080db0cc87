"""Scan in, MC2 mask out: the segmentation pipeline over the stages of :mod:`.stages`.

0. the hand: the user's, a manifest's, the header's or the image's (:mod:`.hand`), never assumed;
   in a whole-hand field of view the row of metacarpal heads gives a box around MC2 and MC3 that
   leaves the thumb out (:mod:`.focus`), and a mask that does not lie on MC2 is refused;
1. find the bone region (one cheap pass) and crop to it, so a 1536 x 1536 field of view costs no
   more than a cropped AIM; restrict to the user's slice range;
2. ``to_working``: densities (mg HA/cm³) of the crop, left hands mirrored to right along x, resampled
   to the model's working spacing (mm, from the checkpoint);
3. ``infer``: batches of slices (2D, with slice context) or one pass (3D); progress after each batch,
   a cancel check between batches;
4. ``from_working``: probabilities back onto the crop's native grid, *then* thresholded (``finish``):
   hole filling per slice, the MC2 component, parted from the proximal phalanx at a waist (:mod:`.joint`), the
   boundary moved within a narrow band onto the scan's half-maximum edge when the checkpoint (or the caller) asks
   for it, and parted from another bone's piece inside it at the softer tissue between them; ``place``: optional
   standard VOI, the crop put back into a mask on the scan's exact grid.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import VbmdError
from ..scan import Scan
from . import postprocess as post
from . import stages
from .hand import HandConflictError, HandDecision, detect_hand, require_hand, resolve_hand
from .models import ClassicalModel, LoadedModel, model_for
from .preprocess import Box, find_bone_box
from .settings import SegmentSettings

Progress = Callable[[int, int, str], None]
__all__ = ["segment", "run", "SegmentationResult", "SegmentSettings", "LoadedModel", "ClassicalModel"]


#: said with a whole-hand field's mask when the image shows no row of metacarpal heads with a clear radial end:
#: then no box around MC2 was made and nothing checked that the mask lies on MC2 (docs/hand.md)
BONE_UNCHECKED = ("not checked to lie on MC2: this whole-hand field shows no row of metacarpal heads with a clear "
                  "radial end; look at the mask, or segment a crop around MC2")


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
    runtime: str = ""  # what ran the network ("onnxruntime 1.x", "torch 2.x"); "" for the classical method

    @property
    def where(self) -> str:
        """The device and what ran the network on it, in words: "cpu (onnxruntime 1.32.0)"; "cpu"."""
        return f"{self.device} ({self.runtime})" if self.runtime else self.device

    @property
    def joint_cut(self) -> dict | None:
        """Where the mask was parted from the proximal phalanx across the joint (:mod:`.joint`), or None."""
        return self.mask.header.get("segmentation", {}).get("joint_cut")

    @property
    def bone_unchecked(self) -> str | None:
        """Why the mask of a whole-hand field could not be checked to lie on MC2 (no row of heads with a
        clear radial end in the image), or None: a crop, or a whole-hand field whose mask was checked."""
        return self.mask.header.get("segmentation", {}).get("bone_unchecked")

    @property
    def hand_decision(self) -> HandDecision:
        return HandDecision(self.hand, self.hand_source, self.hand_confidence, self.hand_reason)

def segment(
    scan: Scan | str | Path,
    model="default",
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
    refuse_other_bone: bool = True,
) -> SegmentationResult:
    """Segment MC2 in ``scan`` (a Scan or a path): the keyword form of :func:`run`.

    ``hand``: "left" or "right" (the user's word), "auto" (the header's, else the image's: see
    :func:`~napari_vbmd.segmentation.hand.resolve_hand`) or a :class:`HandDecision` made earlier
    (e.g. with a batch manifest's hand). When nothing decides it, :class:`HandUndecidedError` is
    raised before any heavy work.

    ``boundary_band_mm``: None uses the checkpoint's setting; 0 keeps the network's boundary; a
    positive value refines it within that band (not used by the classical method, which snaps its
    contour to the edges itself).

    ``refuse_other_bone``: False returns the mask the checks of :func:`run` would refuse (for evaluation and
    calibration, which score masks against a truth; never for a measurement given to a user).
    """
    settings = SegmentSettings(
        model=model, device=device, hand=hand, slice_range=slice_range, voi_mm=voi_mm, threads=threads,
        hole_filling=hole_filling, batch_size=batch_size, keep_probability=keep_probability,
        boundary_band_mm=boundary_band_mm,
    )
    return run(scan, settings, progress=progress, cancel=cancel, refuse_other_bone=refuse_other_bone)


def run(scan: Scan | str | Path, settings: SegmentSettings, progress: Progress | None = None,
        cancel: Callable[[], bool] | None = None, refuse_other_bone: bool = True) -> SegmentationResult:
    """Segment MC2 in ``scan`` as ``settings`` say; see the module docstring for the steps.

    Raises HandUndecidedError when nothing decides the hand, and OtherBoneError (unless
    ``refuse_other_bone`` is False) when, in a whole-hand field, the mask does not lie on MC2, or, in
    any field, it holds MC2 and a neighbour together or, for the classical method, the bone outline it chose
    held two metacarpals joined (TwoBonesError), or it runs out of the scan at both ends (MC2 with the
    phalanx beyond the joint, BeyondJointError: :func:`~napari_vbmd.review_hand.both_ends_concern`), or the bone
    inside it is two pieces parted by a joint space (also BeyondJointError:
    :func:`~napari_vbmd.review_hand.other_bone_piece_concern`); and
    BrokenOutlineError (unless ``refuse_other_bone`` is False) when the mask, any model's, broke up on more
    than a tenth of its slices (:func:`~napari_vbmd.review_hand.ragged_concern`) (these last, the model's doing,
    by :func:`mask_concern`; the error's ``refused`` holds the refused result, for a front end that lets a person
    correct it)."""
    from .focus import OtherBoneError, crop_to, is_whole_hand_field, mc2_box, on_full_grid

    timings = {"read": 0.0, "preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
    if not isinstance(scan, Scan):
        from ..io import read_scan

        t = time.perf_counter()
        scan = read_scan(scan)
        timings["read"] = time.perf_counter() - t
    if scan.kind != "image":
        raise VbmdError("segmentation needs a greyscale image, not a mask", scan.source)

    t = time.perf_counter()
    decision = settings.hand if isinstance(settings.hand, HandDecision) else resolve_hand(scan, settings.hand,
                                                                                          cancel=cancel)
    require_hand(decision, scan)
    evidence = decision.evidence
    whole_field = is_whole_hand_field(scan)
    if evidence is None and whole_field:
        seen = detect_hand(scan, cancel=cancel)  # the row of heads, to find MC2 in the field
        evidence = seen.evidence
        if seen.decided and seen.hand != decision.hand:
            raise HandConflictError(
                f"the hand given ({decision.describe()}) is not the one the image shows ({seen.describe()}); "
                "nothing written: check the hand (docs/hand.md)", scan.source)
    focus = mc2_box(scan, evidence)
    timings["preprocess"] += time.perf_counter() - t

    result = _segment_field(crop_to(scan, focus) if focus else scan, settings, decision, progress, cancel, timings)
    if focus:
        result = on_full_grid(result, scan, focus)
    from ..review_hand import hand_side_concern, mc2_locatable, more_than_mc2_concern, phalanx_concern

    if whole_field and not mc2_locatable(evidence):
        result.mask.header.setdefault("segmentation", {})["bone_unchecked"] = BONE_UNCHECKED
    if refuse_other_bone and evidence is not None:
        concern = hand_side_concern(result.mask.data, scan, evidence)
        if concern is not None:
            raise OtherBoneError(
                f"the mask the model made lies on {concern.details['mask_on']}, not on MC2 (the head at the radial "
                f"end of the row of metacarpal heads); nothing written: check the hand side ({decision.describe()}) "
                "or segment a crop around MC2", scan.source)
        along_ray = phalanx_concern(result.mask.data, scan, evidence, (result.box.z0, result.box.z1))
        if along_ray is not None:
            raise OtherBoneError(f"{along_ray.description}; nothing written: segment a crop around MC2's head "
                                 "and shaft, or check the slice range", scan.source)
        too_wide = more_than_mc2_concern(result.mask.data, scan, evidence)
        if too_wide is not None:
            raise OtherBoneError(f"{too_wide.description}; nothing written: segment a crop around MC2, or try "
                                 "another model", scan.source)
    if refuse_other_bone:  # the model's doing: each line says what to try instead
        found = mask_concern(result.mask.data, scan, (result.box.z0, result.box.z1),
                             result.mask.header.get("segmentation", {}).get("metacarpals_joined"))
        if found is not None:
            error, description = found
            refusal = error(f"{description}; nothing written: try another model ({_other_model(result.model)}), "
                            "or contour MC2 by hand (napari's Segment & measure shows this mask to correct)",
                            scan.source)
            # for a front end that offers the refused mask to a person to correct, unmeasured until then
            refusal.refused, refusal.reason = result, description
            raise refusal
    if progress:
        progress(1, 1, "done")
    return result


def mask_concern(mask, scan: Scan, segmented_slices: tuple[int, int], metacarpals_joined: int | None = None):
    """What makes ``mask`` (on ``scan``'s grid) not MC2 alone, whoever drew it: (the refusal's error class, one
    line), or None when it passes. The checks :func:`run` refuses a model's mask by, in order: an outline the
    classical method chose holding ``metacarpals_joined`` metacarpals, two bones side by side, a mask beyond the
    joint (out of the scan at both ends, or the bone inside in two pieces parted by a joint space; within
    ``segmented_slices``, [first, stop)), and an outline broken on more than a tenth of its slices."""
    from ..review_hand import both_ends_concern, other_bone_piece_concern, ragged_concern, two_bones_concern
    from .focus import BeyondJointError, BrokenOutlineError, TwoBonesError

    if metacarpals_joined:
        return TwoBonesError, (f"the bone outline the classical method chose as MC2 holds {metacarpals_joined} "
                               "metacarpals joined together (a bridge of noise or blur between neighbours), so it "
                               "cannot tell which is MC2")
    two_bones = two_bones_concern(mask, scan.spacing)
    if two_bones is not None:
        return TwoBonesError, two_bones.description
    beyond_joint = both_ends_concern(mask, scan.spacing) or other_bone_piece_concern(mask, scan, segmented_slices)
    if beyond_joint is not None:
        return BeyondJointError, f"{beyond_joint.description}; its density is not MC2's"
    broken = ragged_concern(mask)
    if broken is not None:
        return BrokenOutlineError, f"{broken.description}; its density is not MC2's"
    return None


def _other_model(model) -> str:
    """The model to try when ``model``'s mask was refused, in words."""
    return "the default model" if str(model) == "classical" else "the classical method, or another checkpoint"


def _segment_field(scan: Scan, settings: SegmentSettings, decision: HandDecision, progress, cancel,
                   timings: dict) -> SegmentationResult:
    """The stages on ``scan`` (the whole field, or the box around MC2 in a whole-hand field)."""
    hand = decision.hand
    t = time.perf_counter()
    model = model_for(settings.model, settings.device)
    timings["load"] = time.perf_counter() - t
    with _threads(settings.threads, model):
        t = time.perf_counter()
        box, bone_z = crop_box(scan, model.crop_margin_mm, settings.slice_range)
        timings["preprocess"] += time.perf_counter() - t
        work = stages.to_working(scan, box, hand, model, context=bone_z, cancel=cancel, threads=settings.threads)
        if progress:
            progress(0, 1, "pre-processed")
        prob = stages.infer(model, work, progress, cancel, settings.batch_size)
        probability = stages.from_working(prob, work, threads=settings.threads)
        for key, value in work.timings.items():
            timings[key] += value

        t = time.perf_counter()
        band = model.band_for(settings.boundary_band_mm)
        notes: dict = {}
        crop_mask = stages.finish(probability, scan, box, model.threshold, settings.hole_filling, band, cancel,
                                  threads=settings.threads, notes=notes, edge_level=model.edge_level)
        if not crop_mask.any():
            raise VbmdError("no MC2 found in the scan (the model marked no voxel as bone)", scan.source)
        full, voi, used_range = stages.place(crop_mask, scan, box, settings.voi_mm)
        mask = scan.with_data(full, kind="mask", unit="unknown", calibration=scan.calibration, hand=hand)
        mask.header = dict(scan.header)
        mask.header["segmentation"] = {"model": model.name, "hand": hand, "hand_source": decision.source,
                                       "hand_confidence": decision.confidence, "box": box.to_list(),
                                       "boundary_band_mm": band, "edge_level": model.edge_level if band else None,
                                       "joint_cut": notes.get("joint_cut")}
        if work.findings.get("metacarpals_joined"):
            mask.header["segmentation"]["metacarpals_joined"] = int(work.findings["metacarpals_joined"])
        timings["postprocess"] += time.perf_counter() - t
    return SegmentationResult(
        mask=mask,
        probability=probability if settings.keep_probability else None,
        box=box,
        timings=timings,
        model=model.name,
        device=str(model.device),
        hand=hand,
        hand_source=decision.source,
        slice_range=used_range,
        voi=voi,
        threshold=float(model.threshold),
        hand_confidence=decision.confidence,
        hand_reason=decision.reason,
        runtime=model.runtime_version if isinstance(model, LoadedModel) else "",
    )

def crop_box(scan: Scan, margin_mm: float, slice_range=None) -> tuple[Box, tuple[int, int]]:
    """(the bone box cut to the user's slice range, the bone region's slices [start, stop)); slice
    context reaches across the whole bone region, whatever the range."""
    user_range = post.parse_slice_range(slice_range, scan.shape[0]) if slice_range is not None else None
    box = find_bone_box(scan, margin_mm=margin_mm)
    bone_z = (box.z0, box.z1)
    if user_range is not None:
        z0, z1 = max(box.z0, user_range[0]), min(box.z1, user_range[1])
        if z1 <= z0:
            raise VbmdError(f"no bone in the slice range {user_range[0]}:{user_range[1]}", scan.source)
        box = Box(z0, z1, box.y0, box.y1, box.x0, box.x1)
    return box, bone_z


def _threads(threads: int | None, model):
    if isinstance(model, LoadedModel):
        return model.threads(threads)
    import contextlib

    return contextlib.nullcontext()
