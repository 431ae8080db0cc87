"""Slice-by-slice review: which slices need a look, and what the reviewer said about them.

``flag_slices`` finds slices where the mask's area or shape changes abruptly from the slice
before, where the model was unsure (many voxels with a probability near the threshold along the
contour), and where the mask touches dense bone outside it (a neighbouring bone, or cortex the
mask missed). ``ReviewStore`` keeps the reviewer's verdicts per slice and for the whole case, and
is saved as JSON beside the export.
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ._atomic import write_text_atomic
from .errors import VbmdError

REASON_AREA = "area"
REASON_SHAPE = "shape"
REASON_UNCERTAIN = "uncertain"
REASON_NEIGHBOUR = "neighbour"

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
            REASON_UNCERTAIN: "model unsure on {uncertain_fraction:.0%} of the contour",
            REASON_NEIGHBOUR: "touches {neighbour_voxels:.0f} bone voxels outside the mask",
        }
        return f"slice {self.slice_index}: " + "; ".join(words[r].format(**self.details) for r in self.reasons)


def _ring(slice_mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of the contour, on both sides of it."""
    grown = ndimage.binary_dilation(slice_mask, iterations=width)
    shrunk = ndimage.binary_erosion(slice_mask, iterations=width)
    return grown & ~shrunk


def flag_slices(
    mask: np.ndarray,
    probability: np.ndarray | None = None,
    density: np.ndarray | None = None,
    threshold: float = 0.5,
    area_change: float = 0.25,
    min_overlap: float = 0.75,
    uncertain_band: float = 0.2,
    uncertain_fraction: float = 0.3,
    bone_density: float = 450.0,
    neighbour_voxels: int = 6,
) -> list[SliceFlag]:
    """Slices of ``mask`` (z, y, x) that need a look, in slice order.

    ``probability`` (0..1 float, or uint8 0..255) and ``density`` (mg HA/cm3) are on the mask's
    grid; either may be None, and then its checks are skipped. A slice is flagged for:
    area: its area differs from the previous mask slice's by more than ``area_change`` (relative to
    the previous area, or to a quarter of the median slice area where the bone is thinner: its tips);
    shape: the Dice overlap with the previous slice is below ``min_overlap`` (not at the tips);
    uncertain: more than ``uncertain_fraction`` of the pixels along the contour have a probability
    within ``uncertain_band`` of ``threshold``;
    neighbour: at least ``neighbour_voxels`` pixels within two pixels outside the mask are denser than
    ``bone_density`` and belong to a structure reaching more than 4 pixels away from the mask (a
    neighbouring bone, or cortex the mask missed; not the blur halo along the mask's own edge).
    """
    mask = np.asarray(mask) != 0
    if mask.ndim != 3:
        raise VbmdError(f"the mask to review must be 3-D, got {mask.ndim}-D")
    for name, array in (("probability", probability), ("density", density)):
        if array is not None and np.shape(array) != mask.shape:
            raise VbmdError(f"{name} shape {np.shape(array)} differs from the mask's {mask.shape}")
    areas = mask.sum(axis=(1, 2))
    # tips of the bone are small: changes there are judged against a quarter of the typical area
    floor = 0.25 * float(np.median(areas[areas > 0])) if areas.any() else 1.0
    flags: list[SliceFlag] = []
    previous = None
    for z in np.flatnonzero(areas):
        z = int(z)
        reasons: list[str] = []
        details: dict[str, float] = {}
        current = mask[z]
        if previous is not None:
            prev_area = float(areas[previous])
            change = abs(float(areas[z]) - prev_area) / max(prev_area, floor, 1.0)
            overlap = 2.0 * float((current & mask[previous]).sum()) / float(areas[z] + prev_area)
            details["area_change"] = change
            details["overlap"] = overlap
            if change > area_change:
                reasons.append(REASON_AREA)
            if overlap < min_overlap and min(prev_area, float(areas[z])) >= floor:
                reasons.append(REASON_SHAPE)
        if probability is not None:
            ring = _ring(current, 1)
            p = np.asarray(probability[z])
            p = p.astype(np.float32) / 255.0 if p.dtype == np.uint8 else p.astype(np.float32)
            band = np.abs(p[ring] - threshold) < uncertain_band
            fraction = float(band.mean()) if band.size else 0.0
            details["uncertain_fraction"] = fraction
            if fraction > uncertain_fraction:
                reasons.append(REASON_UNCERTAIN)
        if density is not None:
            count = _neighbour_contact(current, np.asarray(density[z]), bone_density)
            details["neighbour_voxels"] = float(count)
            if count >= neighbour_voxels:
                reasons.append(REASON_NEIGHBOUR)
        if reasons:
            flags.append(SliceFlag(z, reasons, details))
        previous = z
    return flags


def _neighbour_contact(slice_mask: np.ndarray, density: np.ndarray, bone_density: float,
                       contact_px: int = 2, reach_px: float = 4.0) -> int:
    """Pixels of dense bone just outside the mask that belong to a structure reaching well away
    from it: a neighbouring bone (or cortex the mask missed), not the blur halo of its own edge."""
    bone = (density > bone_density) & ~slice_mask
    if not bone.any():
        return 0
    contact = ndimage.binary_dilation(slice_mask, iterations=contact_px) & bone
    if not contact.any():
        return 0
    labels, _ = ndimage.label(bone)
    far = ndimage.distance_transform_edt(~slice_mask) > reach_px
    reaching = np.intersect1d(np.unique(labels[contact]), np.unique(labels[far & bone]))
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


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


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
        when = _now()
        if status == "unreviewed" and not comment:
            self.slices.pop(int(index), None)
        else:
            self.slices[int(index)] = {"status": status, "comment": comment, "by": reviewer, "at": when}
        self.history.append({"slice": int(index), "status": status, "comment": comment, "by": reviewer, "at": when})

    def mark_case(self, status: str, comment: str = "", reviewer: str = "") -> None:
        self._check(status)
        when = _now()
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
