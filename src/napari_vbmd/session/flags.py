"""The review flags of a segmented case, computed where the segmentation looked.

``review.flag_slices`` needs, beside the mask, the model's probability and the scan's densities;
both live on the segmentation's bone crop. ``FlagContext`` holds that crop once per run, so the
first flags and every re-measure after a correction (and ``benchmarks/eval_review_flags.py``) call
the same thing and get slice numbers of the whole scan.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..review import REASON_JOINT, SliceFlag, flag_slices

if TYPE_CHECKING:  # the segmentation package imports torch: not needed to flag a mask
    from ..scan import Scan
    from ..segmentation.pipeline import SegmentationResult
    from ..segmentation.preprocess import Box


@dataclass
class FlagContext:
    box: "Box"  # the segmentation's crop of the scan
    probability: np.ndarray | None  # the model's probability on the crop (None: not kept)
    density: np.ndarray  # mg HA/cm³ of the crop
    threshold: float  # where the model's probability was cut
    spacing: tuple[float, float, float]  # mm (z, y, x)
    joint_cut_slice: int | None = None  # where the pipeline parted the mask from the phalanx (scan slice)
    joint_removed_below: bool | None = None  # the removed bone lay at lower slice numbers than the cut
    joint_beside: bool = False  # the cut removed a piece beside MC2 within its slices (a joint-space cut)
    joint_space: bool = False  # the cut was made at the softer tissue between two pieces, not at a waist

    @classmethod
    def from_segmentation(cls, scan: "Scan", segmentation: "SegmentationResult") -> "FlagContext":
        from ..segmentation.preprocess import density_block

        box = segmentation.box
        cut = segmentation.joint_cut
        return cls(box, segmentation.probability, density_block(scan, box.slices), float(segmentation.threshold),
                   tuple(float(s) for s in scan.spacing), int(cut["slice"]) if cut else None,
                   cut["kept"] == "higher" if cut else None, bool(cut.get("beside")) if cut else False,
                   bool(cut) and cut.get("by") == "joint space")

    def flags(self, mask) -> list[SliceFlag]:
        """The slices of ``mask`` (the whole scan's grid) that need a look, numbered in the scan."""
        sub = np.asarray(mask)[self.box.slices]
        found = flag_slices(sub, probability=self.probability, density=self.density, threshold=self.threshold,
                            spacing=self.spacing)
        flags = [SliceFlag(f.slice_index + self.box.z0, f.reasons, f.details) for f in found]
        return self._joint(flags, mask)

    def _joint(self, flags: list[SliceFlag], mask) -> list[SliceFlag]:
        """The mask's slice nearest to where it was parted from the phalanx, flagged (the head's tip where the
        cut was right; the reviewer is told on which side the removed bone lay)."""
        if self.joint_cut_slice is None:
            return flags
        present = np.flatnonzero(np.asarray(mask).reshape(np.shape(mask)[0], -1).any(axis=1))
        if not present.size:
            return flags
        z = int(present[np.argmin(np.abs(present - self.joint_cut_slice))])
        detail = {"joint_cut_slice": float(self.joint_cut_slice)}
        if self.joint_beside:
            detail["joint_beside"] = 1.0
        elif self.joint_removed_below is not None:
            detail["joint_removed_below"] = float(self.joint_removed_below)
        if self.joint_space and not self.joint_beside:
            detail["joint_space"] = 1.0
        for flag in flags:
            if flag.slice_index == z:
                flag.reasons.append(REASON_JOINT)
                flag.details.update(detail)
                return flags
        return sorted(flags + [SliceFlag(z, [REASON_JOINT], detail)], key=lambda f: f.slice_index)
