"""Slice-by-slice review: which slices need a look, and what the reviewer said about them.

``flag_slices`` finds slices where the mask's area or shape changes abruptly from the slice
before, where the model was unsure (a wide band of probabilities near the threshold along the
contour), where the mask touches dense bone outside it (a neighbouring bone, or cortex the mask
missed), where the mask's outline has a deep notch (a network that cut marrow out behind an
erosion), and where the mask has a hole (marrow left out, or an edit that erased inside the bone).
Distances are physical (mm), so the flags mean the same at 61, 82 or 123 µm. ``ReviewStore``
keeps the reviewer's verdicts per slice and for the whole case, and is saved as JSON beside the
export.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ._atomic import write_text_atomic
from .errors import VbmdError
from .util import timestamp

REASON_AREA = "area"
REASON_SHAPE = "shape"
REASON_UNCERTAIN = "uncertain"
REASON_NEIGHBOUR = "neighbour"
REASON_NOTCH = "notch"
REASON_HOLE = "hole"
REASON_HAND = "hand"
REASON_JOINT = "joint"

#: when at least this fraction of a mask's slices is flagged, the mask may be of another bone (a
#: wrong hand side puts MC3, MC5 or the thumb where MC2 should be): every flag then also says
#: "check the hand side". A right mask flagged most was flagged on about half its slices
#: (heldout_5020, docs/workflow.md); the mask of another bone in issue 17 on 99 of 112.
HAND_FLAGGED_FRACTION = 0.6

STATUSES = ("unreviewed", "reviewed", "flagged")
REVIEW_FORMAT = "napari-vbmd-review"


@dataclass
class SliceFlag:
    slice_index: int
    reasons: list[str]
    details: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        words = {
            REASON_AREA: "area changes by {area_change:.0%}",
            REASON_SHAPE: "shape changes (overlap with previous slice {overlap:.2f})",
            REASON_UNCERTAIN: "model unsure along the contour (band {uncertain_width_mm:.2f} mm wide)",
            REASON_NEIGHBOUR: "touches {neighbour_area_mm2:.2f} mm² of bone outside the mask",
            REASON_NOTCH: "outline notched {notch_depth_mm:.1f} mm deep (bone missed behind an erosion?)",
            REASON_HOLE: "hole of {hole_area_mm2:.2f} mm² inside the mask (marrow left out?)",
            REASON_HAND: "check the hand side: {flagged_fraction:.0%} of the mask's slices are flagged "
                         "(the mask of another bone?)",
            REASON_JOINT: "the mask was parted from the proximal phalanx at slice {joint_cut_slice:.0f} and the "
                          "bone {joint_side} removed: check that it was the phalanx, not MC2",
        }
        if self.details.get("joint_space"):  # past MC2's tip: the phalanx, or a neighbour's head
            words[REASON_JOINT] = ("the mask was parted from another bone across the joint (the proximal phalanx, "
                                   "or a neighbour's head) at slice {joint_cut_slice:.0f} and the bone {joint_side} "
                                   "removed: check that it was not MC2's")
        if self.details.get("joint_beside"):  # a joint-space cut of a piece beside MC2, not past its tip
            words[REASON_JOINT] = ("a piece of another bone beside MC2 was removed from the mask on this slice and "
                                   "its neighbours: check that it was not MC2's")
        below = self.details.get("joint_removed_below")
        side = joint_removed_side(None if below is None else bool(below))
        return f"slice {self.slice_index}: " + "; ".join(words[r].format(**self.details, joint_side=side)
                                                        for r in self.reasons)


def joint_removed_side(removed_below: bool | None) -> str:
    """Where the bone a joint cut removed lay, in slice numbers: "below it", "above it", or "beyond it" (unknown)."""
    return "beyond it" if removed_below is None else "below it" if removed_below else "above it"


def _in_plane(spacing) -> tuple[float, float]:
    values = tuple(float(v) for v in np.ravel(spacing))
    if len(values) not in (2, 3) or not all(np.isfinite(v) and v > 0 for v in values):
        raise VbmdError(f"spacing must be 2 or 3 positive numbers (mm), got {spacing!r}")
    return values[-2], values[-1]


def flag_slices(
    mask: np.ndarray,
    probability: np.ndarray | None = None,
    density: np.ndarray | None = None,
    threshold: float = 0.5,
    spacing=(1.0, 1.0),
    area_change: float = 0.25,
    min_overlap: float = 0.75,
    uncertain_band: float = 0.2,
    uncertain_width_mm: float = 0.3,
    bone_density: float = 450.0,
    neighbour_area_mm2: float = 0.5,
    notch_mm: float = 3.0,
    hole_mm2: float = 0.1,
) -> list[SliceFlag]:
    """Slices of ``mask`` (z, y, x) that need a look, in slice order.

    ``probability`` (0..1 float, or uint8 0..255) and ``density`` (mg HA/cm3) are on the mask's
    grid; either may be None, and then its checks are skipped. ``spacing`` is the voxel size in mm,
    (z, y, x) or (y, x); only the in-plane sizes are used. A slice is flagged for:

    area: its area differs from the previous mask slice's by more than ``area_change`` (relative to
    the previous area, or to a quarter of the median slice area where the bone is thinner: its tips);
    shape: the Dice overlap with the previous slice is below ``min_overlap`` (not at the tips);
    uncertain: within 1 mm of the contour, the pixels whose probability is within ``uncertain_band``
    of ``threshold`` form a band wider on average than ``uncertain_width_mm`` (area / contour length;
    a confident network's band is one or two of its own pixels, ~0.2 mm on a 0.3 mm grid);
    neighbour: at least ``neighbour_area_mm2`` of pixels within 0.25 mm outside the mask are denser
    than ``bone_density`` and belong to a structure reaching more than 1 mm away from the mask (a
    neighbouring bone, or cortex the mask missed; not the blur halo along the mask's own edge);
    notch: the mask's outline cuts deeper than ``notch_mm`` into its own convex hull. MC2's cross
    section is close to convex and an erosion pit a few mm deep at most; a network that loses the
    marrow behind an erosion leaves a notch far deeper (the defaults were set on 48 held-out
    phantoms, see docs/workflow.md). Holes inside the mask are not notches;
    hole: the mask leaves out at least ``hole_mm2`` enclosed by it (the MC2 mask holds the marrow);
    hand: at least :data:`HAND_FLAGGED_FRACTION` of the mask's slices (of five or more) are flagged
    for other reasons: the mask may be of another bone, so every flag also says "check the hand side"
    (:func:`napari_vbmd.review_hand.hand_side_concern` checks a whole-hand field's row of heads).
    """
    mask = np.asarray(mask) != 0
    if mask.ndim != 3:
        raise VbmdError(f"the mask to review must be 3-D, got {mask.ndim}-D")
    for name, array in (("probability", probability), ("density", density)):
        if array is not None and np.shape(array) != mask.shape:
            raise VbmdError(f"{name} shape {np.shape(array)} differs from the mask's {mask.shape}")
    sampling = _in_plane(spacing)
    pixel_mm2 = sampling[0] * sampling[1]
    areas = mask.sum(axis=(1, 2))
    # tips of the bone are small: changes there are judged against a quarter of the typical area
    floor = 0.25 * float(np.median(areas[areas > 0])) if areas.any() else 1.0
    flags: list[SliceFlag] = []
    previous = None
    for z in np.flatnonzero(areas):
        z = int(z)
        reasons: list[str] = []
        details: dict[str, float] = {}
        current, box = _slice_box(mask[z], sampling, margin_mm=1.5)
        if previous is not None:
            prev_area = float(areas[previous])
            change = abs(float(areas[z]) - prev_area) / max(prev_area, floor, 1.0)
            overlap = 2.0 * float((mask[z] & mask[previous]).sum()) / float(areas[z] + prev_area)
            details["area_change"] = change
            details["overlap"] = overlap
            if change > area_change:
                reasons.append(REASON_AREA)
            if overlap < min_overlap and min(prev_area, float(areas[z])) >= floor:
                reasons.append(REASON_SHAPE)
        if probability is not None or density is not None:
            outside_mm = ndimage.distance_transform_edt(~current, sampling=sampling)
        if probability is not None:
            p = np.asarray(probability[z])[box]
            p = p.astype(np.float32) / 255.0 if p.dtype == np.uint8 else p.astype(np.float32)
            inside_mm = ndimage.distance_transform_edt(current, sampling=sampling)
            near = np.where(current, inside_mm, outside_mm) <= 1.0
            band_mm2 = float((near & (np.abs(p - threshold) < uncertain_band)).sum()) * pixel_mm2
            width = band_mm2 / _contour_length_mm(current, sampling)
            details["uncertain_width_mm"] = width
            if width > uncertain_width_mm:
                reasons.append(REASON_UNCERTAIN)
        if density is not None:
            contact_mm2 = _neighbour_contact(current, np.asarray(density[z])[box], bone_density, outside_mm) * pixel_mm2
            details["neighbour_area_mm2"] = contact_mm2
            if contact_mm2 >= neighbour_area_mm2:
                reasons.append(REASON_NEIGHBOUR)
        filled = ndimage.binary_fill_holes(current)
        depth = _notch_depth_mm(filled, sampling)
        details["notch_depth_mm"] = depth
        if depth > notch_mm:
            reasons.append(REASON_NOTCH)
        hole_mm2_here = float((filled & ~current).sum()) * pixel_mm2
        details["hole_area_mm2"] = hole_mm2_here
        if hole_mm2_here >= hole_mm2:
            reasons.append(REASON_HOLE)
        if reasons:
            flags.append(SliceFlag(z, reasons, details))
        previous = z
    n_slices = int((areas > 0).sum())
    if n_slices >= 5 and len(flags) >= HAND_FLAGGED_FRACTION * n_slices:
        for flag in flags:
            flag.reasons.append(REASON_HAND)
            flag.details["flagged_fraction"] = len(flags) / n_slices
    return flags


def _slice_box(slice_mask: np.ndarray, sampling, margin_mm: float):
    """The mask slice cut to its bounding box plus a margin (the flags look no further), and that box."""
    ys, xs = np.nonzero(slice_mask)
    my, mx = (int(np.ceil(margin_mm / s)) + 1 for s in sampling)
    box = (slice(max(0, ys.min() - my), ys.max() + my + 1), slice(max(0, xs.min() - mx), xs.max() + mx + 1))
    return slice_mask[box], box


def _contour_length_mm(slice_mask: np.ndarray, sampling) -> float:
    edge = slice_mask & ~ndimage.binary_erosion(slice_mask, border_value=0)
    return max(float(edge.sum()) * float(np.sqrt(sampling[0] * sampling[1])), 1e-9)


def _notch_depth_mm(slice_mask: np.ndarray, sampling) -> float:
    """How far (mm) the outline cuts into the mask's convex hull at its deepest."""
    from skimage.morphology import convex_hull_image

    if slice_mask.sum() < 3:
        return 0.0
    hull = convex_hull_image(np.pad(slice_mask, 1))
    deficit = hull & ~np.pad(slice_mask, 1)
    if not deficit.any():
        return 0.0
    return float(ndimage.distance_transform_edt(hull, sampling=sampling)[deficit].max())


def _neighbour_contact(slice_mask: np.ndarray, density: np.ndarray, bone_density: float, outside_mm: np.ndarray,
                       contact_mm: float = 0.25, reach_mm: float = 1.0) -> int:
    """Pixels of dense bone just outside the mask that belong to a structure reaching well away
    from it: a neighbouring bone (or cortex the mask missed), not the blur halo of its own edge.
    Within one pixel always counts as contact, however coarse the grid."""
    bone = (density > bone_density) & ~slice_mask
    if not bone.any():
        return 0
    contact = (outside_mm <= contact_mm) | (ndimage.binary_dilation(slice_mask) & ~slice_mask)
    contact &= bone
    if not contact.any():
        return 0
    labels, _ = ndimage.label(bone)
    reaching = np.intersect1d(np.unique(labels[contact]), np.unique(labels[(outside_mm > reach_mm) & bone]))
    reaching = reaching[reaching > 0]
    return int(np.isin(labels[contact], reaching).sum())


def next_slice(flags: list[SliceFlag], current: int, backwards: bool = False) -> int | None:
    """The flagged slice after (or before) ``current``, wrapping around; None without flags."""
    indices = sorted(f.slice_index for f in flags)
    if not indices:
        return None
    if backwards:
        earlier = [i for i in indices if i < current]
        return earlier[-1] if earlier else indices[-1]
    later = [i for i in indices if i > current]
    return later[0] if later else indices[0]


@dataclass
class ReviewStore:
    """The reviewer's verdicts on one case: per slice and for the whole case, with a history."""

    case: str
    scan: str | None = None
    status: str = "unreviewed"
    comment: str = ""
    reviewer: str = ""
    reviewed_at: str | None = None
    slices: dict[int, dict] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)

    def _check(self, status: str) -> None:
        if status not in STATUSES:
            raise VbmdError(f"review status must be one of {', '.join(STATUSES)}, got {status!r}")

    def mark_slice(self, index: int, status: str, comment: str = "", reviewer: str = "") -> None:
        self._check(status)
        when = timestamp()
        if status == "unreviewed" and not comment:
            self.slices.pop(int(index), None)
        else:
            self.slices[int(index)] = {"status": status, "comment": comment, "by": reviewer, "at": when}
        self.history.append({"slice": int(index), "status": status, "comment": comment, "by": reviewer, "at": when})

    def mark_case(self, status: str, comment: str = "", reviewer: str = "") -> None:
        self._check(status)
        when = timestamp()
        self.status, self.comment, self.reviewer, self.reviewed_at = status, comment, reviewer, when
        self.history.append({"slice": None, "status": status, "comment": comment, "by": reviewer, "at": when})

    def slice_status(self, index: int) -> str:
        return self.slices.get(int(index), {}).get("status", "unreviewed")

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES[1:]}
        for entry in self.slices.values():
            out[entry["status"]] = out.get(entry["status"], 0) + 1
        return out

    def to_dict(self) -> dict:
        return {
            "format": REVIEW_FORMAT,
            "case": self.case,
            "scan": self.scan,
            "status": self.status,
            "comment": self.comment,
            "reviewer": self.reviewer,
            "reviewed_at": self.reviewed_at,
            "slices": {str(k): v for k, v in sorted(self.slices.items())},
            "history": list(self.history),
        }

    @classmethod
    def from_dict(cls, data: dict, path: str | Path | None = None) -> "ReviewStore":
        if not isinstance(data, dict) or data.get("format") != REVIEW_FORMAT:
            raise VbmdError("not a napari-vbmd review file", path)
        try:
            store = cls(
                case=str(data["case"]),
                scan=data.get("scan"),
                status=data.get("status", "unreviewed"),
                comment=data.get("comment", ""),
                reviewer=data.get("reviewer", ""),
                reviewed_at=data.get("reviewed_at"),
                slices={int(k): dict(v) for k, v in (data.get("slices") or {}).items()},
                history=list(data.get("history") or []),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise VbmdError(f"review file is malformed ({exc})", path) from None
        store._check(store.status)
        for entry in store.slices.values():
            store._check(entry.get("status"))
        return store

    def save(self, path: str | Path, protect=()) -> Path:
        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n", protect=protect)

    @classmethod
    def load(cls, path: str | Path) -> "ReviewStore":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise VbmdError(f"cannot read review file ({exc.strerror})", path) from None
        except ValueError:
            raise VbmdError("review file is not valid JSON", path) from None
        return cls.from_dict(data, path)


def review_path(out_dir: str | Path, case: str) -> Path:
    """Where a case's review status lives: beside its export."""
    return Path(out_dir) / f"{case}_review.json"
