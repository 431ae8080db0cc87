"""Does the mask sit on MC2? A whole-hand field's row of metacarpal heads says where MC2 is.

A wrong hand side makes the pipeline mirror a hand it should not (or not mirror one it should),
and the network then marks the bone that sits where MC2 would in the other hand: MC3, MC5, the
thumb, or parts of two. In a whole-hand field of view the row of heads MC2-MC5 and the side it
starts on (the larger heads and the thumb are radial) can be found in the image without knowing
the hand (:mod:`napari_vbmd.segmentation.hand_image`), so the mask can be checked against it:
:func:`hand_side_concern` says "check the hand side" when the mask does not lie on the head at
the radial end. (Every slice flag also says so when most of a mask's slices are flagged; see
:func:`napari_vbmd.review.flag_slices`.) In any field, a crop too, :func:`two_bones_concern` says when a
mask holds two bones side by side (MC2 and a neighbour taken in together), :func:`ragged_concern` when its
sections broke up, :func:`both_ends_concern` when it runs out of the scan at both ends (MC2 and the phalanx
across the joint), and :func:`other_bone_piece_concern` when the bone inside it is two pieces parted by a joint
space. Engine code: no napari, no Qt.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .review import REASON_HAND, REASON_JOINT, REASON_SHAPE

#: the row's radial end is trusted when its cues add up to at least this margin (units of
#: hand_image's cues; head sizes and the thumb give up to 3 + 2)
MIN_RADIAL_EVIDENCE = 2.0
HEAD_NAMES = ("MC2", "MC3", "MC4", "MC5")
#: the proximal end is trusted when the distal-to-proximal cues (joint spaces, the thumb's course) add
#: up to at least this margin
MIN_PROXIMAL_EVIDENCE = 2.0
#: a metacarpal is longer than any scan of its joint and leaves the field proximally: MC2's mask
#: reaches the last slice segmented on that side; a mask ending farther than this short of it is not
#: MC2's (the proximal phalanx of the same ray sits in line with MC2, distal of the joint)
PROXIMAL_REACH_MM = 2.0
#: what a mask stopping short of the proximal end lies on, in words
MASK_SHORT_OF_MC2 = "MC2's proximal phalanx, or MC2 without its proximal shaft"
#: a mask whose largest slice exceeds MC2's head section in the row of heads by this factor holds more
#: than MC2 (MC3 is about as large as MC2, so MC2 with MC3 is about twice it). Set on the training
#: generator's 20 whole-hand development fields (32000-32095, 33000-33095): truth masks 0.95-1.23,
#: the networks' masks up to 1.25, the classical method's masks that took in a neighbour 1.65-2.37.
MAX_SECTION_OVER_HEAD = 1.5


def mc2_locatable(evidence) -> bool:
    """Whether a hand detection's evidence shows the row of heads MC2-MC5 with a clear radial end: then
    MC2 is known in the field and a mask can be checked against it."""
    return (evidence is not None and not evidence.problem and len(evidence.row_voxels) == len(HEAD_NAMES)
            and abs(evidence.axis_sum("u")) >= MIN_RADIAL_EVIDENCE)


def mc2_first(evidence, per_head) -> list:
    """``per_head`` (one item per head of ``evidence``'s row, in the row's order) with MC2's first, then MC3,
    MC4, MC5: the row runs from its radial end when the cues say so, else from its other end."""
    return list(per_head) if evidence.axis_sum("u") > 0 else list(per_head)[::-1]


@dataclass
class CaseFlag:
    """A concern about the whole case (not one slice)."""

    reasons: list
    description: str
    details: dict = field(default_factory=dict)


def hand_side_concern(mask, scan, evidence=None) -> CaseFlag | None:
    """A :data:`~napari_vbmd.review.REASON_HAND` flag when ``mask`` (z, y, x on ``scan``'s grid)
    does not lie on MC2, the head at the radial end of the row of heads in a whole-hand field;
    None when it does, or when the field shows no such row (a cropped field) or no clear radial end.
    ``evidence``: a :class:`~napari_vbmd.segmentation.hand.HandDecision`'s evidence, when the
    image was already looked at; otherwise it is looked at here (one averaged pass)."""
    if evidence is None:
        from .segmentation.hand import detect_hand

        evidence = detect_hand(scan).evidence
    if not mc2_locatable(evidence):
        return None
    heads = mc2_first(evidence, evidence.row_voxels)
    projection = np.asarray(mask).any(axis=0)
    if not projection.any():
        return None
    ys, xs = np.nonzero(projection)
    dy, dx = scan.spacing[1], scan.spacing[2]
    centre = (float(ys.mean()), float(xs.mean()))
    places = [(name, head) for name, head in zip(HEAD_NAMES, heads)]
    if evidence.thumb_voxel is not None:
        places.append(("the thumb", evidence.thumb_voxel))
    distances = [math.hypot((centre[0] - y) * dy, (centre[1] - x) * dx) for _, (y, x) in places]
    nearest = int(np.argmin(distances))
    if nearest == 0:
        return None
    name = places[nearest][0]
    return CaseFlag(
        reasons=[REASON_HAND],
        description=(f"check the hand side: the mask lies on {name}, not on MC2 (the head at the radial end of the "
                     "row of metacarpal heads, where the larger heads and the thumb are)"),
        details={"mask_on": name, "distance_to_mc2_mm": distances[0], "distance_to_it_mm": distances[nearest]},
    )


def phalanx_concern(mask, scan, evidence, slices: tuple[int, int]) -> CaseFlag | None:
    """A :data:`~napari_vbmd.review.REASON_HAND` flag when, in a whole-hand field whose proximal end
    the image shows, ``mask`` stops short of that end of the slices segmented ([start, stop)): then it
    lies on MC2's proximal phalanx (in line with MC2, so :func:`hand_side_concern` cannot tell),
    or is MC2 with its proximal shaft left out; not MC2 whole either way. None when it reaches it, or
    when the image does not show which end is proximal."""
    if evidence is None or evidence.problem:
        return None
    along = evidence.axis_sum("w")  # > 0: the slices run distal -> proximal
    if abs(along) < MIN_PROXIMAL_EVIDENCE:
        return None
    present = np.flatnonzero(np.asarray(mask).any(axis=(1, 2)))
    if not present.size:
        return None
    start, stop = slices
    short = (stop - 1 - int(present[-1])) if along > 0 else (int(present[0]) - start)
    short_mm = short * float(scan.spacing[0])
    if short_mm <= PROXIMAL_REACH_MM:
        return None
    end = "last" if along > 0 else "first"
    # Which of the two it is the slices alone cannot say: a network that loses MC2's shaft over its last
    # slices (indep3_90006 of the third independent family, 2026-12-01) stops short just the same.
    return CaseFlag(
        reasons=[REASON_HAND],
        description=(f"the mask stops {short_mm:.1f} mm short of the proximal end of the scan ({end} slice), "
                     "where MC2 leaves the field: it lies on MC2's proximal phalanx, or leaves MC2's shaft out "
                     "there; either way it is not MC2 whole"),
        details={"mask_on": MASK_SHORT_OF_MC2, "short_of_proximal_end_mm": short_mm},
    )


def more_than_mc2_concern(mask, scan, evidence) -> CaseFlag | None:
    """A :data:`~napari_vbmd.review.REASON_HAND` flag when, in a whole-hand field, ``mask``'s largest
    slice is more than :data:`MAX_SECTION_OVER_HEAD` times the section of MC2's head the row of heads
    shows: then it holds a neighbour (MC3, the phalanx beside it) as well as MC2, and its centre may
    still lie on MC2, so :func:`hand_side_concern` passes it. None without a row whose radial end is
    clear, or when the mask is not that large."""
    if not mc2_locatable(evidence):
        return None
    head_mm2 = float(mc2_first(evidence, evidence.row_sizes_mm2)[0])
    areas = np.count_nonzero(np.asarray(mask), axis=(1, 2))  # no boolean copy of a whole-hand field
    largest_mm2 = float(areas.max()) * float(scan.spacing[1]) * float(scan.spacing[2]) if areas.size else 0.0
    if head_mm2 <= 0 or largest_mm2 <= MAX_SECTION_OVER_HEAD * head_mm2:
        return None
    return CaseFlag(
        reasons=[REASON_HAND],
        description=(f"the mask's largest slice ({largest_mm2:.0f} mm2) is {largest_mm2 / head_mm2:.1f} times MC2's "
                     f"head in the row of metacarpal heads ({head_mm2:.0f} mm2): it holds a neighbour as well"),
        details={"mask_on": "MC2 and a neighbour", "largest_slice_mm2": largest_mm2, "mc2_head_mm2": head_mm2},
    )


#: a slice of a mask is thinned by this much from its outline before its bones are counted: two bones
#: taken in together are two sections, or one joined by a bridge through the blur narrower than twice this
#: (a metacarpal's own section, however lobed, flattened or eroded, stays one piece)
SECTION_THINNING_MM = 1.0
#: a part left after the thinning counts as a bone when it is at least this thick (radius; every
#: metacarpal's section is, from the head down the shaft; small bits of cortex are not)
BONE_SECTION_RADIUS_MM = 2.5
#: a mask holding two bones in more than this fraction of its slices holds a neighbour as well as MC2
MAX_TWO_BONE_SLICES = 0.10


def section_depth(section, spacing) -> np.ndarray:
    """Each pixel's distance (mm) to the outside of the 2-D ``section`` (bool), the image's edge counting as
    outside; thresholded at :data:`SECTION_THINNING_MM` it is the section thinned from its outline."""
    from scipy import ndimage

    sampling = (float(spacing[1]), float(spacing[2]))
    return ndimage.distance_transform_edt(np.pad(section, 1), sampling=sampling)[1:-1, 1:-1]


def bones_per_slice(mask, spacing, slices=None) -> np.ndarray:
    """For each slice of ``mask`` (z, y, x) the number of bones its section holds: the parts left after
    thinning it by :data:`SECTION_THINNING_MM` that are at least :data:`BONE_SECTION_RADIUS_MM` thick.
    0 on slices without mask. Works on any field of view; needs no row of heads. ``slices``: the indices
    of the slices holding mask, when already known (:func:`two_bone_slices`)."""
    from scipy import ndimage

    mask = np.asarray(mask)
    counts = np.zeros(mask.shape[0], dtype=np.int32)
    if slices is None:
        slices = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    for z in slices:
        section = mask[z].astype(bool)
        ys, xs = np.nonzero(section)
        depth = section_depth(section[ys.min():ys.max() + 1, xs.min():xs.max() + 1], spacing)
        parts, n = ndimage.label(depth > SECTION_THINNING_MM)
        if n:
            thickest = ndimage.maximum(depth, parts, np.arange(1, n + 1))
            counts[z] = int(np.count_nonzero(np.asarray(thickest) >= BONE_SECTION_RADIUS_MM))
    return counts


def two_bone_slices(mask, spacing) -> tuple[int, int]:
    """(slices of ``mask`` holding two bones or more, slices holding mask): :func:`bones_per_slice` counted once."""
    mask = np.asarray(mask)
    slices = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    counts = bones_per_slice(mask, spacing, slices)
    return int(np.count_nonzero(counts >= 2)), int(slices.size)


def holds_two_bones(two: int, slices: int) -> bool:
    """Whether a mask with ``two`` of its ``slices`` holding two bones is beyond :data:`MAX_TWO_BONE_SLICES`."""
    return bool(slices) and two > MAX_TWO_BONE_SLICES * slices


def two_bones_concern(mask, spacing) -> CaseFlag | None:
    """A :data:`~napari_vbmd.review.REASON_HAND` flag when ``mask`` holds two bones side by side (MC2 and
    MC3, or a phalanx) in more than :data:`MAX_TWO_BONE_SLICES` of its slices (:func:`bones_per_slice`).
    Any field of view: a crop has no row of heads to check the mask's size against
    (:func:`more_than_mc2_concern`), and a mask of two bones measures a density of neither."""
    two, slices = two_bone_slices(mask, spacing)
    if not holds_two_bones(two, slices):
        return None
    return CaseFlag(
        reasons=[REASON_HAND],
        description=(f"the mask holds two bones side by side on {two} of its {slices} slices (MC2 and a "
                     "neighbour taken in together): its density is neither's"),
        details={"mask_on": "MC2 and a neighbour", "two_bone_slices": two, "mask_slices": slices},
    )


#: a section of MC2 fills at least this fraction of its convex hull (eroded and lobed heads included); a mask's
#: section below it has gaps and holes where the outline broke
MIN_SECTION_SOLIDITY = 0.7
#: a mask with more than this fraction of its slices below :data:`MIN_SECTION_SOLIDITY` is broken, not MC2's
#: (any model: on 168 development phantoms the shipped model's masks within issue 20's lines reach 3.7 %, the
#: classical method's 1.1 %; docs/default-model.md)
MAX_RAGGED_SLICES = 0.1


def ragged_slices(mask) -> tuple[int, int]:
    """(slices of ``mask`` whose section fills less than :data:`MIN_SECTION_SOLIDITY` of its convex hull,
    slices holding mask)."""
    from skimage.morphology import convex_hull_image

    mask = np.asarray(mask)
    slices = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    ragged = 0
    for z in slices:
        ys, xs = np.nonzero(mask[z])
        section = mask[z][ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(bool)
        if section.sum() < MIN_SECTION_SOLIDITY * convex_hull_image(section).sum():
            ragged += 1
    return ragged, int(len(slices))


def ragged_concern(mask) -> CaseFlag | None:
    """A :data:`~napari_vbmd.review.REASON_SHAPE` flag when more than :data:`MAX_RAGGED_SLICES` of ``mask``'s
    slices fill less than :data:`MIN_SECTION_SOLIDITY` of their convex hull (:func:`ragged_slices`): an
    outline that broke up (gaps, holes open to the outside, pieces) measures whatever it happened to hold."""
    ragged, slices = ragged_slices(mask)
    if not slices or ragged <= MAX_RAGGED_SLICES * slices:
        return None
    return CaseFlag(
        reasons=[REASON_SHAPE],
        description=(f"the mask's sections are broken on {ragged} of its {slices} slices (they fill less than "
                     f"{MIN_SECTION_SOLIDITY:.0%} of their outline: gaps and holes where the contour failed)"),
        details={"ragged_slices": ragged, "mask_slices": slices},
    )


def end_slice_areas(mask, spacing) -> tuple[float, float]:
    """The area (mm²) of ``mask`` on the stack's first slice and on its last."""
    mask = np.asarray(mask)
    pixel_mm2 = float(spacing[1]) * float(spacing[2])
    return float(np.count_nonzero(mask[0])) * pixel_mm2, float(np.count_nonzero(mask[-1])) * pixel_mm2


def both_ends_concern(mask, spacing) -> CaseFlag | None:
    """A :data:`~napari_vbmd.review.REASON_JOINT` flag when ``mask`` holds bone on the scan's first slice and on
    its last (more than :data:`~napari_vbmd.segmentation.joint.MIN_SIDE_MM2` on each). A scan of the MCP joint
    holds MC2's head, whose tip lies inside it, and part of its shaft, which runs out proximally: MC2 leaves
    the stack at one end only. A mask leaving it at both holds the bone beyond the joint as well (the proximal
    phalanx, where a network carried the mask across a narrow joint space without a waist for
    :mod:`~napari_vbmd.segmentation.joint` to part), or the scan does not hold MC2's head at all."""
    from .segmentation.joint import MIN_SIDE_MM2

    if np.shape(mask)[0] < 2:
        return None
    first, last = end_slice_areas(mask, spacing)
    if first <= MIN_SIDE_MM2 or last <= MIN_SIDE_MM2:
        return None
    return CaseFlag(
        reasons=[REASON_JOINT],
        description=(f"the mask runs out of the scan at both ends ({first:.0f} mm² of it on the first slice, "
                     f"{last:.0f} mm² on the last): MC2 leaves a scan of its joint at one end only, its head lying "
                     "inside, so the mask holds the bone beyond the joint too (the proximal phalanx), or the scan "
                     "does not hold MC2's head"),
        details={"first_slice_mm2": first, "last_slice_mm2": last},
    )


#: inside a mask, bone is what is denser than this (mg HA/cm³): MC2's cortex and the trabeculae joined to it,
#: not the joint space, cartilage, soft tissue or marrow between two bones. Chosen among 400, 450, 500 and 550 on
#: the 168 development phantoms: from 450 on the shipped model's masks carried across the joint part from MC2
#: where the blur still bridged two of them at 400 (docs/default-model.md)
BONE_PIECE_MG = 450.0
#: MC2's bone inside its mask is one piece at :data:`BONE_PIECE_MG` save for crumbs (trabecular bits, at most
#: 5.0 mm³ in the 168 development phantoms' truth masks); a second piece this large is a bone of its own
MIN_OTHER_BONE_MM3 = 10.0
#: ... and it lies beyond the joint when it reaches this far past the main piece's first or last slice
BEYOND_MAIN_PIECE_MM = 0.5


def piece_labels(mask, density) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The bone inside ``mask`` (voxels of ``density``, mg HA/cm³ on the same grid, above :data:`BONE_PIECE_MG`) as
    3-D face-connected pieces: (their labels, [(label, voxels, first slice, last slice)] largest first)."""
    from scipy import ndimage

    labels, n = ndimage.label((np.asarray(density) > BONE_PIECE_MG) & np.asarray(mask).astype(bool))
    if not n:
        return labels, []
    voxels = np.bincount(labels.ravel())[1:]
    boxes = ndimage.find_objects(labels)
    return labels, [(int(i) + 1, int(voxels[i]), boxes[i][0].start, boxes[i][0].stop - 1)
                    for i in np.argsort(voxels)[::-1]]


def bone_pieces(mask, scan) -> list[tuple[float, int, int]]:
    """The pieces the bone inside ``mask`` (z, y, x on ``scan``'s grid) falls into at :data:`BONE_PIECE_MG`
    (3-D, face-connected; :func:`piece_labels`), largest first: (volume mm³, first slice, last slice). Only the
    mask's bounding box is converted to density; needs ``scan``'s calibration (the networks already did)."""
    from .segmentation.postprocess import bounding_box

    mask = np.asarray(mask)
    box = bounding_box(mask)
    if box is None:
        return []
    _, pieces = piece_labels(mask[box], scan.density(box))
    return in_mm3(pieces, scan.voxel_volume_mm3, box[0].start)


def in_mm3(pieces, voxel_mm3: float, first_slice: int = 0) -> list[tuple[float, int, int]]:
    """:func:`piece_labels`' pieces as :func:`bone_pieces` gives them: (volume mm³, first slice, last slice), the
    slices counted from ``first_slice``."""
    return [(voxels * voxel_mm3, first_slice + first, first_slice + last) for _, voxels, first, last in pieces]


def joint_side(mask, slices: tuple[int, int] | None = None) -> str | None:
    """Which end of the slices segmented ([start, stop), the whole stack by default) MC2's joint lies at:
    "start" when ``mask`` reaches the last slice and not the first (MC2's shaft leaves the range there, its head
    lies inside), "stop" the other way round, None when it reaches both or neither."""
    mask = np.asarray(mask)
    present = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    if not present.size:
        return None
    start, stop = slices if slices is not None else (0, mask.shape[0])
    at_start, at_stop = int(present[0]) <= start, int(present[-1]) >= stop - 1
    if at_stop and not at_start:
        return "start"
    if at_start and not at_stop:
        return "stop"
    return None


def second_piece(pieces, slice_mm: float, side: str | None = None) -> tuple[float, float]:
    """(volume mm³ of the second of :func:`bone_pieces`, how far (mm) it reaches past the first one's end slice on
    ``side`` ("start": towards slice 0, "stop": the other way, None: either, the farther)); (0, 0) when the bone is
    one piece."""
    if len(pieces) < 2:
        return 0.0, 0.0
    (_, first, last), (other, other_first, other_last) = pieces[:2]
    reach = {"start": first - other_first, "stop": other_last - last}
    slices = reach[side] if side else max(reach.values())
    return other, max(slices, 0) * float(slice_mm)


def piece_past_the_joint(mask, scan, slices: tuple[int, int] | None = None) -> tuple[list, float, float]:
    """(:func:`bone_pieces` of ``mask``, the second piece's volume mm³, how far it reaches past the first towards
    the joint: :func:`second_piece` on :func:`joint_side` of the slices segmented ``slices``), as
    :func:`other_bone_piece_concern` judges them."""
    pieces = bone_pieces(mask, scan)
    return (pieces, *second_piece(pieces, scan.spacing[0], joint_side(mask, slices)))


def other_bone_piece_concern(mask, scan, slices: tuple[int, int] | None = None) -> CaseFlag | None:
    """A :data:`~napari_vbmd.review.REASON_JOINT` flag when the bone inside ``mask`` falls into two pieces of
    :data:`MIN_OTHER_BONE_MM3` or more (:func:`bone_pieces`), the second reaching more than
    :data:`BEYOND_MAIN_PIECE_MM` past the first's end slice on the joint's side (:func:`joint_side` of the slices
    segmented, ``slices`` [start, stop); either side when the mask does not show which): a gap darker than bone
    parts them, a joint space, so the mask holds MC2 and the bone beyond its joint (the proximal phalanx). A
    network carries the mask across a narrow joint space where the mask's outline has no waist for
    :mod:`~napari_vbmd.segmentation.joint` to part, and short of the scan's ends, where :func:`both_ends_concern`
    does not see it; the density inside the mask still shows the joint space. (A second piece towards the shaft's
    end is MC2's own bone cut off by a mask that leaves a band of it out, not another bone: not judged here.)"""
    pieces, other, beyond_mm = piece_past_the_joint(mask, scan, slices)
    if other < MIN_OTHER_BONE_MM3 or beyond_mm <= BEYOND_MAIN_PIECE_MM:
        return None
    (main, first, last), (_, other_first, other_last) = pieces[:2]
    return CaseFlag(
        reasons=[REASON_JOINT],
        description=(f"the mask holds two bones parted by a joint space: besides the main one ({main:.0f} mm³ of "
                     f"bone denser than {BONE_PIECE_MG:.0f} mg HA/cm³, slices {first}-{last}) a second of "
                     f"{other:.0f} mm³ (slices {other_first}-{other_last}) reaching {beyond_mm:.1f} mm past it, "
                     "with nothing but softer tissue between them: MC2 and the bone beyond its joint (the proximal "
                     "phalanx)"),
        details={"main_piece_mm3": main, "other_piece_mm3": other, "beyond_main_piece_mm": beyond_mm,
                 "main_slices": (first, last), "other_slices": (other_first, other_last)},
    )
