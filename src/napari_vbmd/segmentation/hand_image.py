"""What the image says about the hand: the anatomical cues behind :func:`~.hand.detect_hand`.

Chirality is a 3-D property. A left hand is the mirror image of a right hand; a rotation in the
slice plane (by 180 degrees, say) keeps it, and reversing the slice order flips it. So the side is
never read from where a bone lies in the image, but from three anatomical directions found in it,
each with a sign of its own:

- **radial to ulnar** (u): along the row of metacarpal heads MC2-MC5 (their centres, found in one
  downsampled pass), towards the smaller heads (MC2 and MC3 are larger than MC4 and MC5) and away
  from the thumb, which lies beyond the radial end of the row;
- **dorsal to palmar** (v): across the row, towards the thicker soft tissue (palm, flexor tendons;
  the back of the hand is thin), towards the thumb, and towards the concave side of the arch the
  heads lie on;
- **distal to proximal** (w): along the slices, away from the joint: the joint space between each
  metacarpal's domed head and the cupped base of its phalanx is a shell whose apex (on the bone's
  axis) points distally.

For the project's right hand (the phantom generator's convention: x radial to ulnar, y dorsal to
palmar, z distal to proximal) the triad (u, v, w) has the orientation of the voxel axes (x, y, z);
for a left hand the opposite one. Each cue gives a signed margin in units of its typical clear
margin, capped, so no single cue decides alone; :func:`~.hand.detect_hand` turns them into a side
and a confidence.

Everything runs on a copy of the scan averaged down to about :data:`WORK_SPACING_MM` (one pass over
the voxels, slab by slab; no full-size copy).
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import CancelledError
from ..scan import UNIT_DENSITY, Scan

#: voxel size (mm) the analysis works at
WORK_SPACING_MM = 0.4
#: density (mg HA/cm3) above which an averaged voxel is bone, for the bones' sections
BONE_MG = 200.0
#: a joint space lies between two bone plates (a head's cortex, a phalanx base's) denser than this,
#: at most JOINT_GAP_MM apart along z, and holds soft tissue: on average less dense than JOINT_SOFT_MG
PLATE_MG = 350.0
JOINT_GAP_MM = (0.6, 4.0)
JOINT_SOFT_MG = 150.0
#: density above which a voxel is tissue, not air (air reads at the calibration's intercept, about -360 to -400)
TISSUE_MG = -150.0
#: sections smaller than this (mm2) are not bones we use
MIN_BONE_AREA_MM2 = 35.0
#: the sections of neighbouring metacarpal heads lie this far apart, edge to edge (mm; negative: they touch)
ROW_EDGE_GAP_MM = (-3.0, 8.0)
#: how far (mm, RMS) the heads' centres may lie from their fitted line and still be a row
ROW_RESIDUAL_MM = 4.0
#: each cue's margin is capped at this many units, so two cues at least are needed to be sure
CUE_CAP = 3.0


@dataclass
class Cue:
    axis: str  # "u" (radial->ulnar), "v" (dorsal->palmar), "w" (distal->proximal), "uw" (their product)
    name: str
    score: float  # signed margin, capped at +-CUE_CAP; positive: the axis' reference direction is right
    note: str

    def to_dict(self) -> dict:
        return {"axis": self.axis, "cue": self.name, "score": round(self.score, 3), "note": self.note}


@dataclass
class ImageEvidence:
    """The row of heads found and the cues. ``row`` holds the heads' (y, x) centres in mm from the
    scan's first voxel, in the order of the row's reference direction ``row_direction`` (dy, dx);
    ``row_voxels`` the same centres as (y, x) voxel indices of the scan."""

    row: list = field(default_factory=list)
    row_voxels: list = field(default_factory=list)
    thumb_voxel: tuple | None = None
    row_sizes_mm2: list = field(default_factory=list)
    row_direction: tuple = (0.0, 1.0)
    normal_direction: tuple = (1.0, 0.0)
    thumb: tuple | None = None
    thumb_size_mm2: float | None = None
    cues: list = field(default_factory=list)
    problem: str | None = None  # why no triad could be found (e.g. a cropped field)
    seconds: float = 0.0

    def axis_sum(self, axis: str) -> float:
        return float(sum(c.score for c in self.cues if c.axis == axis))

    def locate(self, scan_spacing, work_spacing) -> None:
        """Fill ``row_voxels``/``thumb_voxel``: a work voxel i covers scan voxels i*f .. i*f + f - 1."""
        def voxel(point):
            return tuple(float(p / s_scan + (s_work / s_scan - 1) / 2)
                         for p, s_scan, s_work in zip(point, scan_spacing[1:], work_spacing[1:]))

        self.row_voxels = [voxel(p) for p in self.row]
        self.thumb_voxel = voxel(self.thumb) if self.thumb is not None else None


# ---------------------------------------------------------------------------------------------
# One pass over the scan
# ---------------------------------------------------------------------------------------------
def pooled_density(scan: Scan, target_mm: float = WORK_SPACING_MM, cancel=None) -> tuple[np.ndarray, tuple]:
    """The scan averaged in blocks of about ``target_mm`` (mg HA/cm3, float32) and its voxel size.

    In-plane the last incomplete block is left out (less than ``target_mm`` at the field's edge);
    along z it is kept when it holds half a block or more (the joints lie near the volume's ends)."""
    fz, fy, fx = (max(1, int(round(target_mm / s))) for s in scan.spacing)
    nz, ny, nx = scan.shape
    fz = min(fz, nz)
    hy, hx = ny // fy, nx // fx
    starts = [k for k in range(0, nz, fz) if nz - k >= (fz + 1) // 2]
    out = np.empty((len(starts), hy, hx), dtype=np.float32)
    for i, k in enumerate(starts):
        if cancel is not None and cancel():
            raise CancelledError("hand detection cancelled")
        slab = np.asarray(scan.data[k:k + fz, :hy * fy, :hx * fx])
        # summed one axis at a time, the contiguous ones first (a mean over axes (0, 2, 4) of the
        # 5-D view strides through memory and costs several times as much); integers sum exactly
        total = slab.sum(axis=0, dtype=np.int64 if slab.dtype.kind in "iub" else np.float64)
        total = total.reshape(hy, fy, hx * fx).sum(axis=1).reshape(hy, hx, fx).sum(axis=2)
        out[i] = total / (slab.shape[0] * fy * fx)
    if scan.unit != UNIT_DENSITY:
        out = dataclasses.replace(scan, data=out, header={}).density()
    spacing = (scan.spacing[0] * fz, scan.spacing[1] * fy, scan.spacing[2] * fx)
    return np.asarray(out, dtype=np.float32), spacing


# ---------------------------------------------------------------------------------------------
# The row of metacarpal heads
# ---------------------------------------------------------------------------------------------
@dataclass
class _Blob:
    label: int
    centre: np.ndarray  # (y, x) mm
    size: float  # mm2: a large section of the bone (90th percentile over slices)
    truncated: bool  # touches the field's edge


def _blobs(solid: np.ndarray, px: tuple) -> tuple[list, np.ndarray]:
    """Bones in the projection, split where they touch (watershed on the distance to soft tissue)."""
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    fraction = solid.mean(axis=0)
    footprint = fraction >= 0.2
    distance = ndimage.distance_transform_edt(footprint, sampling=px)
    peaks = peak_local_max(distance, min_distance=max(1, int(round(4.0 / px[0]))), threshold_abs=2.0,
                           labels=ndimage.label(footprint)[0], exclude_border=False)
    markers = np.zeros(footprint.shape, dtype=np.int32)
    for i, (y, x) in enumerate(peaks, 1):
        markers[y, x] = i
    labels = watershed(-distance, markers, mask=footprint)
    pixel = px[0] * px[1]
    blobs = []
    areas_per_slice = np.stack([np.bincount(labels[s].ravel(), minlength=len(peaks) + 1) for s in solid]) * pixel
    ny, nx = footprint.shape
    for i in range(1, len(peaks) + 1):
        region = labels == i
        if not region.any():
            continue
        size = float(np.percentile(areas_per_slice[:, i], 95))
        if size < MIN_BONE_AREA_MM2:
            continue
        ys, xs = np.nonzero(region)
        weights = fraction[ys, xs]
        centre = np.array([np.average(ys, weights=weights) * px[0], np.average(xs, weights=weights) * px[1]])
        truncated = ys.min() == 0 or xs.min() == 0 or ys.max() == ny - 1 or xs.max() == nx - 1
        blobs.append(_Blob(i, centre, size, bool(truncated)))
    return blobs, labels


def _line(points: np.ndarray):
    """Centre, unit direction and RMS perpendicular residual of the best line through ``points``."""
    centre = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centre)
    direction = vt[0]
    normal = np.array([-direction[1], direction[0]])
    residual = float(np.sqrt(np.mean(((points - centre) @ normal) ** 2)))
    return centre, direction, residual


def _find_row(blobs: list) -> tuple[list, str | None]:
    """Four metacarpal heads side by side: bones of like size whose sections almost touch (the
    heads are bound together; the thumb lies across the first web space, well apart), on a line."""
    candidates = sorted((b for b in blobs if not b.truncated), key=lambda b: -b.size)[:8]
    best, best_cost = None, math.inf
    for subset in itertools.combinations(candidates, 4):
        sizes = np.array([b.size for b in subset])
        if sizes.max() > 4.0 * sizes.min():
            continue
        points = np.array([b.centre for b in subset])
        centre, direction, residual = _line(points)
        t = (points - centre) @ direction
        order = np.argsort(t)
        radii = np.sqrt(sizes[order] / math.pi)
        gaps = np.diff(t[order]) - (radii[1:] + radii[:-1])  # between neighbouring sections' edges, mm
        if residual > ROW_RESIDUAL_MM or gaps.max() > ROW_EDGE_GAP_MM[1] or gaps.min() < ROW_EDGE_GAP_MM[0]:
            continue
        cost = residual + float(np.abs(gaps).mean())
        if cost < best_cost:
            best, best_cost = subset, cost
    if not blobs:
        return [], "no bone in the field of view to tell the hand from"
    if best is None:
        whole = sum(not b.truncated for b in blobs)
        return [], (f"no row of four metacarpal heads in the field of view ({whole} whole bone section"
                    f"{'' if whole == 1 else 's'} found): a field cropped to MC2 and MC3 cannot tell the hand, "
                    "since MC2 and MC3 are alike and the thumb, MC4 and MC5 are outside it")
    return list(best), None


# ---------------------------------------------------------------------------------------------
# Cues
# ---------------------------------------------------------------------------------------------
def _cap(value: float) -> float:
    return float(np.clip(value, -CUE_CAP, CUE_CAP))


def _size_cue(row, t) -> Cue:
    sizes = np.log([b.size for b in row])
    order = np.argsort(t)
    first, last = sizes[order[:2]].mean(), sizes[order[2:]].mean()
    margin = first - last  # log ratio of the first two heads' sections to the last two's
    return Cue("u", "head sizes", _cap(margin / 0.1),
               f"heads at the row's start are {100 * (math.exp(margin) - 1):+.0f}% larger in section than at its end")


def _thumb_cue(blobs, row, centre, direction, normal, t) -> tuple[list, "_Blob | None"]:
    members = {b.label for b in row}
    half = (t.max() - t.min()) / 2
    middle = (t.max() + t.min()) / 2
    best = None
    for b in blobs:
        if b.label in members or b.truncated:
            continue
        along = float((b.centre - centre) @ direction)
        across = float((b.centre - centre) @ normal)
        beyond = abs(along - middle) / half
        if beyond < 0.8 or abs(across) < 4.0 or b.size > 1.5 * max(r.size for r in row):
            continue
        if best is None or b.size > best[0].size:
            best = (b, along - middle, across, beyond)
    if best is None:
        return [], None
    b, along, across, beyond = best
    strength = min(1.0, (beyond - 0.8) / 0.4) * 2.0
    side = "start" if along < 0 else "end"
    cues = [
        Cue("u", "thumb", _cap(-np.sign(along) * strength), f"a bone beyond the row's {side} (the thumb)"),
        Cue("v", "thumb", _cap(np.sign(across) * min(2.0, abs(across) / 4.0)),
            f"the thumb lies {abs(across):.0f} mm to the {'+' if across > 0 else '-'} side of the row"),
    ]
    return cues, b


def _soft_tissue_cue(inside: np.ndarray, px, centre, direction, normal, t) -> Cue | None:
    """Skin distances across the row: the palm is thick, the back of the hand thin."""
    ratios = []
    step = min(px) / 2
    for s in np.linspace(t.min(), t.max(), 9):
        base = centre + s * direction
        reach = []
        for sign in (1.0, -1.0):
            d = 0.0
            while True:
                d += step
                y, x = base + sign * d * normal
                iy, ix = int(round(y / px[0])), int(round(x / px[1]))
                if not (0 <= iy < inside.shape[0] and 0 <= ix < inside.shape[1]) or not inside[iy, ix]:
                    break
                if d > 80.0:
                    break
            reach.append(d)
        if min(reach) > 1.0:
            ratios.append(math.log(reach[0] / reach[1]))
    if len(ratios) < 5:
        return None
    margin = float(np.median(ratios))
    return Cue("v", "soft tissue", _cap(margin / 0.15),
               f"the skin is {100 * (math.exp(abs(margin)) - 1):.0f}% further from the row on the "
               f"{'+' if margin > 0 else '-'} side")


def _arch_cue(row, centre, direction, normal, t) -> Cue:
    n = np.array([(b.centre - centre) @ normal for b in row])
    coeffs = np.polyfit(t, n, 2)
    half = (t.max() - t.min()) / 2
    sagitta = float(coeffs[0] * half * half)  # how far the ends bend off the middle, mm
    return Cue("v", "arch", _cap(sagitta / 1.0),
               f"the row's ends bend {abs(sagitta):.1f} mm to its {'+' if sagitta > 0 else '-'} side")


@dataclass
class _Joint:
    apex_z: float  # mm: where the joint space crosses the bone's axis
    bend: float  # mm: how far the joint space moves along z from the axis to the rim (+: to higher slices)


def _joint_gaps(smooth: np.ndarray, dz: float) -> np.ndarray:
    """Voxels of soft tissue between two bone plates along z, the plates at most
    :data:`JOINT_GAP_MM` apart: a joint space (head's cortex on one side, the phalanx's base on the
    other), not marrow (a head's marrow reaches from its plate far along the bone)."""
    nz = smooth.shape[0]
    plate = smooth > PLATE_MG
    z = np.arange(nz)[:, None, None]
    before = np.maximum.accumulate(np.where(plate, z, -1), axis=0)
    after = np.minimum.accumulate(np.where(plate, z, nz)[::-1], axis=0)[::-1]
    length = after - before - 1
    inner = ~plate & (before >= 0) & (after < nz) & (length * dz >= JOINT_GAP_MM[0]) & (length * dz <= JOINT_GAP_MM[1])
    sums = np.concatenate([np.zeros((1,) + smooth.shape[1:], np.float64), np.cumsum(smooth, axis=0, dtype=np.float64)])
    start = np.clip(before + 1, 0, nz)
    stop = np.clip(after, 0, nz)
    total = np.take_along_axis(sums, stop, axis=0) - np.take_along_axis(sums, start, axis=0)
    mean = total / np.maximum(length, 1)
    return inner & (mean < JOINT_SOFT_MG)


def _joints(density: np.ndarray, labels: np.ndarray, row, spacing) -> list:
    """Each head's joint space: the largest sheet of :func:`_joint_gaps` within the bone's
    footprint, and how it bends."""
    dz, dy, dx = spacing
    smooth = ndimage.gaussian_filter(density, (0.0, 0.3 / dy, 0.3 / dx))  # noise and marrow average out
    joints = []
    for b in row:
        region = labels == b.label
        ys, xs = np.nonzero(region)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        inner = _joint_gaps(smooth[:, y0:y1, x0:x1], dz) & region[None, y0:y1, x0:x1]
        parts, n = ndimage.label(inner)
        if n == 0:
            joints.append(None)
            continue
        sizes = np.bincount(parts.ravel())[1:]
        shell = parts == (int(np.argmax(sizes)) + 1)
        covered = shell.any(axis=0)
        if covered.sum() < 0.25 * region.sum() or covered.sum() < 12:
            joints.append(None)
            continue
        count = shell.sum(axis=0)[covered]
        zc = (shell * np.arange(shell.shape[0])[:, None, None]).sum(axis=0)[covered] / count * dz
        cy, cx = np.nonzero(covered)
        r2 = ((cy + y0) * dy - b.centre[0]) ** 2 + ((cx + x0) * dx - b.centre[1]) ** 2
        coef, *_ = np.linalg.lstsq(np.vstack([np.ones_like(r2), r2]).T, zc, rcond=None)
        joints.append(_Joint(apex_z=float(coef[0]), bend=float(coef[1] * np.percentile(r2, 90))))
    return joints


def _joint_cues(joints) -> list:
    """The joint spaces' shells: on each bone's axis they lie more distal than towards its rim
    (the metacarpal's head is domed, its phalanx's base cupped). One cue per joint, each capped
    at half the usual cap: four joints that agree are needed for the full weight."""
    cues = []
    for k, joint in enumerate(joints):
        if joint is None:
            continue
        cues.append(Cue("w", f"joint space {k + 1}", _cap(joint.bend / 0.5) / 2,
                        f"the joint space of head {k + 1} of the row bends {abs(joint.bend):.1f} mm towards "
                        f"{'higher' if joint.bend > 0 else 'lower'} slices from the axis to the rim"))
    return cues


def _cascade_cue(joints, t) -> Cue | None:
    """The MCP joints step proximally from MC2-MC3 to MC5: along the row, the joints move along z
    towards its ulnar end. This ties the row's direction to the slices' (u times w)."""
    pairs = [(tt, j.apex_z) for tt, j in zip(t, joints) if j is not None]
    if len(pairs) < 3:
        return None
    tt, zz = np.array(pairs).T
    slope = np.polyfit(tt, zz, 1)[0]
    step = float(slope * (t.max() - t.min()))
    return Cue("uw", "joint cascade", _cap(step / 1.5),
               f"the joints lie {abs(step):.1f} mm further along {'higher' if step > 0 else 'lower'} slices at "
               "the row's end than at its start")


def _thumb_course_cue(solid: np.ndarray, labels: np.ndarray, evidence: ImageEvidence, spacing) -> Cue | None:
    """The thumb's ray diverges from the index ray distally (the first web space opens towards the
    fingertips): the thumb's section moves away from the row of heads in the distal slices."""
    if evidence.thumb is None:
        return None
    dz, dy, dx = spacing
    label = labels[int(round(evidence.thumb[0] / dy)), int(round(evidence.thumb[1] / dx))]
    if label == 0:
        return None
    direction = np.array(evidence.row_direction)
    middle = (np.array(evidence.row[0]) + np.array(evidence.row[-1])) / 2
    outward = direction if float((np.array(evidence.thumb) - middle) @ direction) > 0 else -direction
    ys, xs = np.nonzero(labels == label)
    zs, away = [], []
    for k in range(solid.shape[0]):
        inside = solid[k, ys, xs]
        if inside.sum() * dy * dx < MIN_BONE_AREA_MM2:
            continue
        zs.append(k * dz)
        away.append(float(np.array([ys[inside].mean() * dy, xs[inside].mean() * dx]) @ outward))
    if len(zs) < 5 or max(zs) - min(zs) < 3.0:
        return None
    slope = float(np.polyfit(zs, away, 1)[0])  # mm away from the row per mm along z
    return Cue("w", "thumb's course", _cap(-slope / 0.1) / 2,
               f"the thumb moves {abs(slope):.2f} mm away from the row per mm towards "
               f"{'lower' if slope < 0 else 'higher'} slices")


def analyse(density: np.ndarray, spacing: tuple) -> ImageEvidence:
    """The row of heads and the cues in an averaged scan (mg HA/cm3) of voxel size ``spacing``."""
    px = (spacing[1], spacing[2])
    solid = density > BONE_MG
    for k in range(solid.shape[0]):
        solid[k] = ndimage.binary_fill_holes(solid[k])
    blobs, labels = _blobs(solid, px)
    row, problem = _find_row(blobs)
    evidence = ImageEvidence()
    if problem:
        evidence.problem = problem
        return evidence
    points = np.array([b.centre for b in row])
    centre, direction, _ = _line(points)
    # (y, x) order: with u = direction and v = normal, (u, v, +z) has the orientation of the voxel axes (x, y, z)
    normal = np.array([direction[1], -direction[0]])
    t = (points - centre) @ direction
    order = np.argsort(t)
    row = [row[i] for i in order]
    t = t[order]
    evidence.row = [tuple(float(c) for c in b.centre) for b in row]
    evidence.row_sizes_mm2 = [b.size for b in row]
    evidence.row_direction = tuple(float(v) for v in direction)
    evidence.normal_direction = tuple(float(v) for v in normal)
    cues = [_size_cue(row, t)]
    thumb_cues, thumb = _thumb_cue(blobs, row, centre, direction, normal, t)
    if thumb is not None:
        evidence.thumb, evidence.thumb_size_mm2 = tuple(float(v) for v in thumb.centre), thumb.size
    cues += thumb_cues
    inside = (density > TISSUE_MG).mean(axis=0) > 0.5
    inside = ndimage.binary_fill_holes(inside)
    soft = _soft_tissue_cue(inside, px, centre, direction, normal, t)
    if soft is not None:
        cues.append(soft)
    cues.append(_arch_cue(row, centre, direction, normal, t))
    joints = _joints(density, labels, row, spacing)
    cues += _joint_cues(joints)
    cues += [c for c in (_cascade_cue(joints, t), _thumb_course_cue(solid, labels, evidence, spacing)) if c is not None]
    evidence.cues = cues
    return evidence
