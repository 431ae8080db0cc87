"""MC2 separated from the proximal phalanx where a mask runs on across the joint.

Where the joint space is narrow and blurred, a network can carry the mask from MC2's head over the
joint into the base of the proximal phalanx: the mask is one component, D100 rises by 5-13 %
(docs/default-model.md). Along the slices such a mask narrows to a waist (the dome of the head meets
the bottom of the phalanx's cup) and widens again into the other bone. :func:`separate_at_joint`
finds that waist in the mask's cross-sectional areas and, where there is one, parts the two bones
by a watershed on the scan's densities between a seed on either side (the joint space is the dark
ridge between them); the side with the smaller volume goes.

A waist is only taken for a joint when

- the mask's area there is at most :data:`WAIST_RATIO` of its widest slices within
  :data:`WAIST_WINDOW_MM` on *both* sides, and both sides are bone-sized (:data:`MIN_SIDE_MM2`): a
  crumb at the head's tip is no phalanx;
- the outline narrows too, not only the mask: the convex hull of the waist slice is at most
  :data:`HULL_RATIO` of the sides' widest hulls. Where a network leaves part of a slice out (heavy
  motion, a thin cortex), the mask narrows but the bone it traces keeps its outline: that is no
  joint, and cutting there would throw away the head;
- one side is clearly the smaller: at most :data:`MAX_REMOVED_FRACTION` of the other's volume. The
  slice direction of a crop is not known (docs/hand.md), so which side is MC2 is decided by volume:
  MC2 is the bone the field is centred on. Where the sides are of like size nothing is cut;
- the kept side begins as a dome: MC2's head is rounded, so its sections grow steadily away from
  the joint, and within :data:`DOME_MM` of the waist its widest convex hull is at most
  :data:`DOME_RATIO` of the widest within :data:`WAIST_WINDOW_MM`. Where a network lost a piece of
  the shaft or the head, the mask narrows at a notch and is back at full width a slice or two
  beyond it: cutting there would throw away MC2's own bone (the fourth independent family's
  indep4_80022 lost its shaft that way);
- the kept side runs on to the end of the stack if the removed side does: a scan of the MCP joint
  holds MC2's head and part of its shaft, never its base, so MC2 always leaves the field of view
  proximally. A candidate whose removed side reaches an end of the stack (within
  :data:`STACK_END_MM`) while the kept side stops short of the other end would keep a piece of bone
  that ends inside the scan and throw away the one that runs out of it: a notch in the shaft, not
  the joint.

The candidates are tried from the narrowest (relative to its sides) on; the first that meets every
rule is the joint.

None of 144 truth masks of the training generator (72 training, 48 broad and 24 study phantoms)
has such a waist; the cut is recorded in the mask's header and the segment output (``joint_cut``).

Where the mask has no waist, the density inside it can still show another bone:
:func:`separate_at_joint_space` (after the boundary refinement) parts the mask from a second piece of bone past
MC2's tip towards the joint, or beside MC2, at the softer tissue between them (docs/default-model.md, "Another
bone's piece inside the mask, parted off").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage

from ..review_hand import (BEYOND_MAIN_PIECE_MM, BONE_PIECE_MG, MIN_OTHER_BONE_MM3, in_mm3, joint_side, piece_labels,
                           second_piece, two_bones_concern)

#: how far (mm) either side of a slice the widest cross-sections are looked for: MC2's head and the
#: phalanx's base both regain their width within about 2 mm of the joint
WAIST_WINDOW_MM = 3.0
#: the mask's area at a joint's waist, at most this fraction of the widest slices on both sides
WAIST_RATIO = 0.5
#: both sides' widest slices at least this large (mm²): bone, not a crumb of the head's tip
MIN_SIDE_MM2 = 20.0
#: the waist slice's convex hull, at most this fraction of the widest hulls on both sides
HULL_RATIO = 0.6
#: the removed side's volume, at most this fraction of the kept side's
MAX_REMOVED_FRACTION = 0.5
#: the kept side's widest hull within DOME_MM of the waist, at most DOME_RATIO of its widest within
#: WAIST_WINDOW_MM. A spherical head of radius 7 mm gives 0.4 at 1 mm; the training generator's 26
#: masks cut at a joint (broad phantoms 30000-30047 and 31000-31095) gave 0.42-0.80; a notch the
#: network left in a shaft, back at full width within 1 mm, gives 0.97-1.0
DOME_MM = 1.0
DOME_RATIO = 0.9
#: a side "reaches the end of the stack" when its last slice is within this far (mm) of the stack's
#: first or last slice (the network may leave the outermost slice or two out). On the training
#: generator's 26 masks cut at a joint the kept side reached the end (0 mm) every time; of 52 notches
#: carved 1 mm from the end of their correct MC2 masks with a 2 mm taper (which the dome rule passes),
#: 4 are still cut: those whose head's tip lies within 0.5 mm of the stack's other end
STACK_END_MM = 0.5
#: the watershed's seeds: MC2's side from this far (mm) beyond the waist, the phalanx's from this far
#: (the cup's rim reaches about 1 mm back around the head, so MC2's seed starts beyond it)
KEEP_SEED_MM = 1.0
OTHER_SEED_MM = 0.3
#: smoothing of the densities before the watershed (mm): enough to quiet noise, not the joint space
SMOOTHING_MM = 0.05


@dataclass(frozen=True)
class JointCut:
    """Where a mask was parted at a joint (slice index in the mask's own array)."""

    slice: int
    kept: str  # "higher" or "lower" slice indices
    removed_voxels: int
    waist_mm2: float
    sides_mm2: tuple[float, float]  # widest slices below and above the waist

    def to_dict(self, first_slice: int = 0) -> dict:
        return {"slice": self.slice + first_slice, "kept": self.kept, "removed_voxels": self.removed_voxels,
                "waist_mm2": round(self.waist_mm2, 2), "sides_mm2": [round(s, 2) for s in self.sides_mm2],
                "description": self.describe(first_slice)}

    def describe(self, first_slice: int = 0) -> str:
        return (f"the mask ran on across a joint at slice {self.slice + first_slice} ({self.waist_mm2:.0f} mm² "
                f"between {self.sides_mm2[0]:.0f} and {self.sides_mm2[1]:.0f} mm²); the smaller side, "
                f"{self.removed_voxels} voxels, was taken for the proximal phalanx and removed")


def _slices(mm: float, spacing) -> int:
    """At least one slice, about ``mm`` along z."""
    return max(1, int(round(mm / float(spacing[0]))))


def _hull_area(section: np.ndarray) -> int:
    from skimage.morphology import convex_hull_image

    return int(convex_hull_image(section).sum()) if section.any() else 0


@dataclass(frozen=True)
class Waist:
    """A joint's waist in a mask: its slice, areas (mm²) and the side that is MC2."""

    slice: int
    area_mm2: float
    sides_mm2: tuple[float, float]  # widest slices below and above
    keep_higher: bool


def find_waist(mask: np.ndarray, spacing) -> Waist | None:
    """The mask's joint waist (every rule of the module met), or None."""
    pixel = float(spacing[1]) * float(spacing[2])
    per_slice = np.count_nonzero(mask.reshape(mask.shape[0], -1), axis=1)
    areas = per_slice * pixel
    present = np.flatnonzero(areas)
    if present.size < 3:
        return None
    first, last = int(present[0]), int(present[-1])
    reach = _slices(WAIST_WINDOW_MM, spacing)
    dome = _slices(DOME_MM, spacing)
    candidates = []
    for z in range(first + 1, last):
        below = areas[max(first, z - reach):z].max()
        above = areas[z + 1:min(last + 1, z + reach + 1)].max()
        side = min(below, above)
        if side >= MIN_SIDE_MM2 and areas[z] <= WAIST_RATIO * side:
            candidates.append((areas[z] / side, z, float(below), float(above)))
    hulls: dict[int, float] = {}

    def hull(z: int) -> float:
        if z not in hulls:
            hulls[z] = _hull_area(mask[z]) * pixel
        return hulls[z]

    before = np.concatenate([[0], np.cumsum(per_slice)])  # voxels in slices < z
    slack = _slices(STACK_END_MM, spacing)
    at_start, at_end = first <= slack, last >= mask.shape[0] - 1 - slack
    for _, z, below, above in sorted(candidates):
        lower, higher = int(before[z]), int(before[-1] - before[z + 1])
        if min(lower, higher) > MAX_REMOVED_FRACTION * max(lower, higher):
            continue  # decided by counts alone: before any hull is drawn
        keep_higher = higher >= lower
        if (at_start and not at_end) if keep_higher else (at_end and not at_start):
            continue  # the removed side runs out of the scan, the kept one ends inside it: MC2's shaft would go
        lower_side = [hull(k) for k in range(z - 1, max(first, z - reach) - 1, -1)]  # outward from the waist
        higher_side = [hull(k) for k in range(z + 1, min(last + 1, z + reach + 1))]
        if hull(z) > HULL_RATIO * min(max(lower_side), max(higher_side)):
            continue
        kept = higher_side if keep_higher else lower_side
        if max(kept[:dome]) > DOME_RATIO * max(kept):
            continue
        return Waist(z, float(areas[z]), (below, above), keep_higher)
    return None


def separate_at_joint(mask: np.ndarray, densities: Callable[[int, int], np.ndarray],
                      spacing) -> tuple[np.ndarray, JointCut | None]:
    """``mask`` without the bone across a joint waist, and the cut (None: no waist, mask unchanged).

    ``densities(start, stop)`` gives the scan's densities (mg HA/cm³) of the mask's slices
    ``start..stop`` (only the slices around the waist are read)."""
    from skimage.segmentation import watershed

    from .postprocess import keep_largest_component

    mask = np.asarray(mask, dtype=bool)
    found = find_waist(mask, spacing)
    if found is None:
        return mask, None
    z, keep_higher = found.slice, found.keep_higher
    reach = _slices(WAIST_WINDOW_MM, spacing)
    z0, z1 = max(0, z - reach), min(mask.shape[0], z + reach + 1)
    near = mask[z0:z1]
    index = np.arange(z0, z1)[:, None, None]
    keep_seed, other_seed = _slices(KEEP_SEED_MM, spacing), _slices(OTHER_SEED_MM, spacing)
    seeds = np.zeros(near.shape, dtype=np.int32)
    if keep_higher:
        seeds[(index >= z + keep_seed) & near] = 1
        seeds[(index <= z - other_seed) & near] = 2
    else:
        seeds[(index <= z - keep_seed) & near] = 1
        seeds[(index >= z + other_seed) & near] = 2
    smooth = ndimage.gaussian_filter(np.asarray(densities(z0, z1), dtype=np.float32),
                                     [SMOOTHING_MM / float(s) for s in spacing])
    basins = watershed(-smooth, seeds, mask=near)  # the joint space is the dark ridge between the seeds
    out = mask.copy()
    if keep_higher:
        out[:z0] = False
    else:
        out[z1:] = False
    out[z0:z1] = basins == 1
    out = keep_largest_component(out)
    cut = JointCut(slice=z, kept="higher" if keep_higher else "lower",
                   removed_voxels=int(np.count_nonzero(mask) - np.count_nonzero(out)),
                   waist_mm2=found.area_mm2, sides_mm2=found.sides_mm2)
    return out, cut


@dataclass(frozen=True)
class JointSpaceCut:
    """Where a mask was parted from another bone's piece inside it (:func:`separate_at_joint_space`; slice index in
    the mask's own array: MC2's tip, or for a piece beside MC2 its slice nearest the joint)."""

    slice: int
    kept: str  # "higher" or "lower" slice indices
    removed_voxels: int
    main_piece_mm3: float
    other_piece_mm3: float
    other_slices: tuple[int, int]
    beyond_mm: float

    def to_dict(self, first_slice: int = 0) -> dict:
        return {"slice": self.slice + first_slice, "kept": self.kept, "removed_voxels": self.removed_voxels,
                "by": "joint space", "beside": self.beside, "main_piece_mm3": round(self.main_piece_mm3, 1),
                "other_piece_mm3": round(self.other_piece_mm3, 1),
                "other_slices": [s + first_slice for s in self.other_slices], "beyond_mm": round(self.beyond_mm, 2),
                "description": self.describe(first_slice)}

    @property
    def beside(self) -> bool:
        """The removed piece lay beside MC2's, within its slices, not past its tip."""
        return self.beyond_mm <= BEYOND_MAIN_PIECE_MM

    def describe(self, first_slice: int = 0) -> str:
        first, last = (s + first_slice for s in self.other_slices)
        pieces = (f"the bone inside the mask was two pieces with softer tissue between them: besides MC2's "
                  f"({self.main_piece_mm3:.0f} mm³ denser than {BONE_PIECE_MG:.0f} mg HA/cm³) one of "
                  f"{self.other_piece_mm3:.0f} mm³ (slices {first}-{last})")
        if self.beside:
            return (f"{pieces} beside it, not MC2's own (the rim of the phalanx's cup around MC2's head, a neighbour "
                    f"or a sesamoid); its side of the softer tissue, {self.removed_voxels} voxels, was removed (check "
                    f"slice {self.slice + first_slice})")
        return (f"{pieces} reaching {self.beyond_mm:.1f} mm past it towards the joint; its side of the softer tissue, "
                f"{self.removed_voxels} voxels, was taken for another bone (the proximal phalanx across the joint, or "
                f"a neighbour's head) and removed (the mask now ends at slice {self.slice + first_slice})")


def separate_at_joint_space(mask: np.ndarray, densities: Callable[[tuple], np.ndarray],
                            spacing) -> tuple[np.ndarray, JointSpaceCut | None]:
    """``mask`` without another bone's piece inside it, parted at the softer tissue between them, and the cut
    (None: mask unchanged).

    Where a network carries the mask across a narrow joint space its outline need not narrow (no waist for
    :func:`separate_at_joint`), but the bone inside it (:func:`~napari_vbmd.review_hand.piece_labels`) is still two
    pieces with the darker joint space between them; a mask that takes in the rim of the phalanx's cup around MC2's
    head holds a second piece beside MC2's. When the second piece holds
    :data:`~napari_vbmd.review_hand.MIN_OTHER_BONE_MM3` or more and does not reach more than
    :data:`~napari_vbmd.review_hand.BEYOND_MAIN_PIECE_MM` past the main one towards the shaft's end (the end of the
    mask's array it reaches; a piece there is MC2's own shaft cut off from its head by a gap in the mask), a
    watershed on the densities from the two pieces parts the mask along the softer tissue between them (the dark
    valley) and the second piece's side goes; the largest component stays. The largest piece is taken for MC2, which
    holds for the phalanx (the field is MC2's) but not for a neighbour side by side: a mask holding two bones side by
    side (:func:`~napari_vbmd.review_hand.two_bones_concern`) is not cut (the pipeline refuses it).
    ``densities(region)`` gives mg HA/cm³ of the mask's ``region`` (z, y, x slices): only the mask's bounding box
    is read. A mask that reaches both ends of its array, or neither, does not show which end is the joint: it is
    left as it is (the pipeline refuses it: :func:`~napari_vbmd.review_hand.both_ends_concern`,
    :func:`~napari_vbmd.review_hand.other_bone_piece_concern`); so is a mask the cut leaves with a second piece
    still past the first (the pipeline judges the cut mask again)."""
    from skimage.segmentation import watershed

    from .postprocess import bounding_box, keep_largest_component

    mask = np.asarray(mask, dtype=bool)
    side = joint_side(mask)
    if side is None:  # the mask reaches both ends of its array or neither (or is empty): the joint's end unknown
        return mask, None
    box = bounding_box(mask)
    density = np.asarray(densities(box), dtype=np.float32)
    labels, pieces = piece_labels(mask[box], density)
    in_mask = in_mm3(pieces, float(np.prod([float(s) for s in spacing])), box[0].start)
    other, beyond = second_piece(in_mask, spacing[0], side)
    _, past_shaft_end = second_piece(in_mask, spacing[0], "stop" if side == "start" else "start")
    if other < MIN_OTHER_BONE_MM3 or past_shaft_end > BEYOND_MAIN_PIECE_MM:
        return mask, None  # one piece (and crumbs), or MC2's own shaft cut off from its head by a gap in the mask
    if two_bones_concern(mask, spacing) is not None:
        return mask, None  # two bones side by side: which is MC2 the pieces' sizes cannot tell (refused as before)
    seeds = np.zeros(labels.shape, dtype=np.int32)
    seeds[labels == pieces[0][0]] = 1
    seeds[labels == pieces[1][0]] = 2
    smooth = ndimage.gaussian_filter(density, [SMOOTHING_MM / float(s) for s in spacing])
    basins = watershed(-smooth, seeds, mask=mask[box])  # the joint space is the dark valley between the seeds
    out = np.zeros_like(mask)
    out[box] = basins == 1
    out = keep_largest_component(out)
    keep_higher = side == "start"  # the joint at the lower slice numbers
    present = np.flatnonzero(out.reshape(out.shape[0], -1).any(axis=1))
    end = int(present[0] if keep_higher else present[-1])  # MC2's tip, where a piece past it was parted off
    if beyond <= BEYOND_MAIN_PIECE_MM:  # a piece beside MC2: the reviewer is sent to its slice nearest the joint
        end = max(end, in_mask[1][1]) if keep_higher else min(end, in_mask[1][2])
    return out, JointSpaceCut(slice=end,
                              kept="higher" if keep_higher else "lower",
                              removed_voxels=int(np.count_nonzero(mask) - np.count_nonzero(out)),
                              main_piece_mm3=in_mask[0][0], other_piece_mm3=other,
                              other_slices=(in_mask[1][1], in_mask[1][2]), beyond_mm=beyond)
