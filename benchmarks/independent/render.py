"""From a hand and a field of view to an image (mg HA/cm3 before noise) and MC2's truth.

The design is evaluated analytically at voxel centres (partial volume from the signed distance:
a linear ramp one voxel wide), slab by slab along y with a halo so that the point spread sees
what lies outside each slab and outside the field. Then, slice by slice: motion (k-space), noise,
quantisation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .hand import HandAnatomy
from .scanner import ScannerSettings, apply_psf_core, apply_psf_tail, hu_to_density, psf_halo_voxels

SLAB_VOXELS = 12_000_000  # design voxels per slab (memory: about 10 float32 copies of this)


@dataclass(frozen=True)
class Placement:
    """Hand frame -> scanner field (mm): world = pivot_world + R (q - pivot_hand)."""

    rotation: np.ndarray
    pivot_hand: np.ndarray
    pivot_world: np.ndarray

    def to_hand(self, world: np.ndarray) -> np.ndarray:
        return (world - self.pivot_world.astype(np.float32)) @ self.rotation.astype(np.float32) + self.pivot_hand.astype(np.float32)

    def to_world(self, hand: np.ndarray) -> np.ndarray:
        return (hand - self.pivot_hand) @ self.rotation.T + self.pivot_world


def rotation_zyx(in_plane_deg: float, tilt_y_deg: float, tilt_x_deg: float) -> np.ndarray:
    """Rotation in (z, y, x) coordinates: about z (in-plane), then tilts about y and about x."""
    a, b, c = np.radians([in_plane_deg, tilt_y_deg, tilt_x_deg])
    rz = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    # tilt about the y axis mixes z and x; about the x axis mixes z and y
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rx = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Field:
    shape: tuple[int, int, int]
    voxel_mm: float
    position: tuple[int, int, int]  # AIM position (z, y, x) of voxel (0, 0, 0) in the scanner's grid

    def world(self, k, j, i):
        h = self.voxel_mm
        return ((self.position[0] + k) * h, (self.position[1] + j) * h, (self.position[2] + i) * h)


def _bone_box(bone, placement: Placement, field: Field, region) -> tuple[slice, slice, slice] | None:
    """Index ranges (within ``region``'s arrays) that can hold the bone."""
    reach = bone.radius_bound() + 0.6
    corners = np.array([[s, v, w] for s in (0.0, bone.s_max) for v in (-reach, reach) for w in (-reach, reach)])
    world = placement.to_world(corners @ bone.axes + bone.origin)
    out = []
    for axis, (lo_idx, hi_idx) in enumerate(region):
        lo = np.floor(world[:, axis].min() / field.voxel_mm) - field.position[axis] - 1
        hi = np.ceil(world[:, axis].max() / field.voxel_mm) - field.position[axis] + 2
        lo, hi = max(int(lo), lo_idx), min(int(hi), hi_idx)
        if hi <= lo:
            return None
        out.append(slice(lo - lo_idx, hi - lo_idx))
    return tuple(out)


def coarse_positions(n: int, step: int = 2) -> np.ndarray:
    """Every ``step``-th index from 0 up to the first at or beyond n - 1 (for ``upsample``)."""
    return np.arange(0, (-(-(n - 1) // step) + 1) * step, step)


def upsample(coarse: np.ndarray, shape: tuple[int, ...], steps: tuple[int, ...]) -> np.ndarray:
    """Linear interpolation from samples at ``coarse_positions(n, step)`` along each axis back to ``shape``."""
    out = np.asarray(coarse, dtype=np.float32)
    for axis, (n, step) in enumerate(zip(shape, steps)):
        if step == 1:
            continue
        i = np.arange(n)
        i0 = i // step
        i1 = np.minimum(i0 + 1, out.shape[axis] - 1)
        w = ((i % step) / step).astype(np.float32)
        wshape = [1] * out.ndim
        wshape[axis] = n
        w = w.reshape(wshape)
        out = np.take(out, i0, axis=axis) * (1 - w) + np.take(out, i1, axis=axis) * w
    return np.ascontiguousarray(out, dtype=np.float32)


def upsample2(coarse: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Linear interpolation from samples at every second index (``coarse_positions``) back to ``shape``."""
    out = np.asarray(coarse, dtype=np.float32)
    for axis, n in enumerate(shape):
        m = (n + 1) // 2
        src = np.moveaxis(out, axis, 0)
        fine = np.empty((n,) + src.shape[1:], dtype=np.float32)
        fine[0::2] = src[:m]
        np.add(src[: n // 2], src[1 : n // 2 + 1], out=fine[1::2])
        fine[1::2] *= np.float32(0.5)
        out = np.moveaxis(fine, 0, axis)
    return np.ascontiguousarray(out)


def _points(field: Field, region, index_arrays, placement: Placement) -> np.ndarray:
    """Hand-frame coordinates (..., 3) of the voxel centres on the grid of per-axis index arrays (relative to
    ``region``); built by broadcasting the affine map along each axis."""
    h = field.voxel_mm
    world = [(idx + region[a][0] + field.position[a]) * h - placement.pivot_world[a] for a, idx in enumerate(index_arrays)]
    shape = tuple(len(w) for w in world)
    out = np.empty(shape + (3,), dtype=np.float32)
    r = placement.rotation
    for c in range(3):
        out[..., c] = ((r[0, c] * world[0])[:, None, None] + (r[1, c] * world[1])[None, :, None]
                       + (r[2, c] * world[2] + placement.pivot_hand[c])[None, None, :]).astype(np.float32)
    return out


def hand_distance(q: np.ndarray, hand: HandAnatomy) -> np.ndarray:
    """Signed distance (mm) to the skin: the hand's cross-section (a superellipse, flatter dorsally) and the thumb."""
    o = hand.outline
    y, x = q[..., 1], q[..., 2]
    yc, xc = 0.5 * (o["y_dorsal"] + o["y_palmar"]), 0.5 * (o["x_radial"] + o["x_ulnar"])
    ay = np.where(y < yc, yc - o["y_dorsal"], o["y_palmar"] - yc).astype(np.float32)
    ax = np.float32(0.5 * (o["x_ulnar"] - o["x_radial"]))
    p = o["power"]
    ty, tx = np.abs(y - yc) / ay + 1e-6, np.abs(x - xc) / ax + 1e-6
    norm = (ty ** p + tx ** p) ** (1 / p)
    gy = norm ** (1 - p) * ty ** (p - 1) / ay
    gx = norm ** (1 - p) * tx ** (p - 1) / ax
    d_hand = (norm - 1) / np.sqrt(gy * gy + gx * gx)
    if hand.thumb_axis is not None:
        point, direction, radius = hand.thumb_axis
        rel = q - point.astype(np.float32)
        along = rel @ direction.astype(np.float32)
        d_thumb = np.linalg.norm(rel - along[..., None] * direction.astype(np.float32), axis=-1) - radius
        if hand.design["thumb"]["apart"]:
            d_hand = np.minimum(d_hand, d_thumb)
        else:  # smooth union: the thumb's web merges with the hand
            k = 4.0
            mix = np.clip(0.5 + 0.5 * (d_thumb - d_hand) / k, 0, 1)
            d_hand = d_thumb * (1 - mix) + d_hand * mix - k * mix * (1 - mix)
    return d_hand.astype(np.float32)


def soft_tissue_fields(q: np.ndarray, hand: HandAnatomy) -> np.ndarray:
    """The smooth fields soft tissue is made of: distance to the skin, the dorsal/palmar side (-1..1), the
    fat marbling pattern and the distance to the nearest tendon."""
    o = hand.outline
    y, x = q[..., 1], q[..., 2]
    yc = 0.5 * (o["y_dorsal"] + o["y_palmar"])
    side = np.clip((y - yc) / 3.0, -1, 1)
    marble = np.zeros(y.shape, dtype=np.float32)
    for kz, ky, kx, phase in o["marbling_waves"]:
        marble += np.cos(q[..., 0] * kz + y * ky + x * kx + phase)
    tendon = np.full(y.shape, 1e3, dtype=np.float32)
    for t in hand.tendons:
        (cy, cx), (sy, sx) = t.centre_yx, t.semi_yx
        e = np.sqrt(((y - cy) / sy) ** 2 + ((x - cx) / sx) ** 2)
        tendon = np.minimum(tendon, (e - 1) * min(sy, sx))
    return [hand_distance(q, hand), side.astype(np.float32), marble, tendon]


def soft_tissue(fields, hand: HandAnatomy, calibration, voxel_mm: float, air_hu: float) -> np.ndarray:
    """Density (mg HA/cm3) of air, skin, fat, muscle and tendons from ``soft_tissue_fields``."""
    o, hu = hand.outline, hand.hu
    d_hand, side, marble, tendon = fields
    depth = -d_hand
    fat_mm = o["fat_dorsal_mm"] + (o["fat_palmar_mm"] - o["fat_dorsal_mm"]) * (0.5 + 0.5 * side)
    fat_share = np.clip(hu["marbling"] * (1 + 0.5 * marble), 0, 1)
    inner = hu["muscle"] + (hu["fat"] - hu["muscle"]) * fat_share
    tissue = np.where(depth < o["skin_mm"], hu["skin"], np.where(depth < o["skin_mm"] + fat_mm, hu["fat"], inner))
    share = np.clip(0.5 - tendon / voxel_mm, 0, 1)
    tissue = tissue + (hu["tendon"] - tissue) * share
    inside = np.clip(0.5 - d_hand / voxel_mm, 0, 1)
    hu_map = air_hu + (tissue - air_hu) * inside
    return hu_to_density(hu_map, calibration).astype(np.float32)


class Renderer:
    def __init__(self, hand: HandAnatomy, field: Field, placement: Placement, settings: ScannerSettings, calibration):
        self.hand, self.field, self.placement = hand, field, placement
        self.settings, self.calibration = settings, calibration
        self.h = field.voxel_mm
        self.air_hu = -1000.0 + settings.air_offset_hu
        self.halo = psf_halo_voxels(settings)
        self.joint_of = {j.phalanx: j for j in hand.joints}
        self.metacarpal_joint = {j.metacarpal: j for j in hand.joints}

    def active_box(self) -> tuple[slice, slice]:
        """The (y, x) index ranges that can hold anything but air: the hand and thumb, 2 mm margin."""
        o = self.hand.outline
        nz, ny, nx = self.field.shape
        z_lo = self.field.position[0] * self.h
        corners = []
        for z in (z_lo - 5.0, z_lo + nz * self.h + 5.0):
            z_hand = self.placement.to_hand(np.array([[z, 0.0, 0.0]]))[0, 0]
            for y in (o["y_dorsal"], o["y_palmar"]):
                for x in (o["x_radial"], o["x_ulnar"]):
                    corners.append([z_hand, y, x])
        if self.hand.thumb_axis is not None:
            point, direction, radius = self.hand.thumb_axis
            for t in np.linspace(-60, 60, 25):
                p = point + t * direction
                for dy in (-radius, radius):
                    for dx in (-radius, radius):
                        corners.append([p[0], p[1] + dy, p[2] + dx])
        world = self.placement.to_world(np.array(corners))
        margin = 2.0 + 1.5 * self.h
        out = []
        for axis, n in ((1, ny), (2, nx)):
            lo = int(np.floor((world[:, axis].min() - margin) / self.h)) - self.field.position[axis]
            hi = int(np.ceil((world[:, axis].max() + margin) / self.h)) - self.field.position[axis]
            out.append(slice(max(lo, 0), max(min(hi, n), max(lo, 0) + 1)))
        return tuple(out)

    def render(self, progress=None) -> tuple[np.ndarray, tuple[slice, slice], np.ndarray]:
        """(blurred design float32 on the active box, the active (y, x) box, MC2 truth bool on the whole field),
        in right-hand orientation. Outside the active box the design is air."""
        nz, ny, nx = self.field.shape
        box_y, box_x = self.active_box()
        ay, ax = box_y.stop - box_y.start, box_x.stop - box_x.start
        g = self.halo
        rows = max(16, int(SLAB_VOXELS // ((nz + 2 * g) * (ax + 2 * g))) - 2 * g)
        blurred = np.empty((nz, ay, ax), dtype=np.float32)
        truth = np.zeros(self.field.shape, dtype=bool)
        starts = list(range(0, ay, rows))
        for n, y0 in enumerate(starts):
            y1 = min(ay, y0 + rows)
            region = ((-g, nz + g), (box_y.start + y0 - g, box_y.start + y1 + g), (box_x.start - g, box_x.stop + g))
            design, slab_truth = self._design(region)
            out = apply_psf_core(design, self.settings)
            blurred[:, y0:y1] = out[g:g + nz, g:g + (y1 - y0), g:g + ax]
            truth[:, box_y.start + y0:box_y.start + y1, box_x] = slab_truth[g:g + nz, g:g + (y1 - y0), g:g + ax]
            if progress:
                progress(n + 1, len(starts) + 1, "rendering")
        apply_psf_tail(blurred, self.settings)
        if progress:
            progress(len(starts) + 1, len(starts) + 1, "rendering")
        return blurred, (box_y, box_x), truth

    def _design(self, region):
        shape = tuple(hi - lo for lo, hi in region)
        # soft tissue varies slowly: evaluated every 8th slice and every 2nd row and column, then interpolated
        steps = (8, 2, 2)
        idx = [coarse_positions(n, step) for n, step in zip(shape, steps)]
        fields = soft_tissue_fields(_points(self.field, region, idx, self.placement), self.hand)
        coarse = soft_tissue(fields, self.hand, self.calibration, 2 * self.h, self.air_hu)
        background = upsample(coarse, shape, steps)
        occupancy = np.zeros(shape, dtype=np.float32)
        contribution = np.zeros(shape, dtype=np.float32)
        truth = np.zeros(shape, dtype=bool)
        for bone in self.hand.bones.values():
            box = _bone_box(bone, self.placement, self.field, region)
            if box is None:
                continue
            for z0 in range(box[0].start, box[0].stop, 16):
                sub = (slice(z0, min(z0 + 16, box[0].stop)), box[1], box[2])
                self._bone_chunk(bone, region, sub, background, occupancy, contribution, truth)
        over = np.maximum(occupancy, 1.0)
        design = background * (1 - np.minimum(occupancy, 1.0)) + contribution / over
        return design, truth

    def _coarse(self, region, sub, fn):
        """``fn(hand-frame points)`` -> (..., k) sampled at every second voxel of ``sub`` and interpolated."""
        shape = tuple(b.stop - b.start for b in sub)
        idx = [coarse_positions(n) + b.start for n, b in zip(shape, sub)]
        values = fn(_points(self.field, region, idx, self.placement))
        return [upsample2(values[..., i], shape) for i in range(values.shape[-1])]

    def _bone_chunk(self, bone, region, sub, background, occupancy, contribution, truth):
        h = np.float32(self.h)
        hu = self.hand.hu
        joint = self.joint_of.get(bone.name)
        pits = self.hand.pits if bone is self.hand.target else []

        def fields(q):
            loc = bone.local(q)
            d, cortex, _ = bone.evaluate(loc)
            out = [d, cortex * bone.endosteal_factor(loc)]
            if joint is not None:
                mc = self.hand.bones[joint.metacarpal]
                out.append(mc.evaluate(mc.local(q))[0])
            if pits:
                out.append(np.min(np.stack([pit.distance(q) for pit in pits]), axis=0))
            return np.stack(out, axis=-1)

        values = self._coarse(region, sub, fields)
        d, cortex = values[0], values[1]
        if d.min() > 0.5 * h + 0.3:
            return
        d_solid = d
        inner_reference = d
        if joint is not None:  # a phalanx base: carve the cup around its metacarpal's head
            d_mc = values[2]
            d_solid = np.maximum(d, joint.gap_mm - d_mc)
            inner_reference = d_solid  # the subchondral plate follows the cup
            space = (d_mc > 0) & (d_mc < joint.gap_mm + 0.15) & (d < 0.3)
            cart = hu_to_density(hu["cartilage"], self.calibration)
            background[sub] = np.where(space, np.float32(cart), background[sub])
        if pits:
            d_solid = np.maximum(d, -values[-1])
            removed = np.clip(np.clip(0.5 - d / h, 0, 1) - np.clip(0.5 - d_solid / h, 0, 1), 0, 1)
            pannus = np.float32(hu_to_density(hu["pannus"], self.calibration))
            background[sub] += (pannus - background[sub]) * removed
        occ_out = np.clip(0.5 - d_solid / h, 0, 1)
        occ_in = np.minimum(np.clip(0.5 - (inner_reference + cortex) / h, 0, 1), occ_out)
        marrow = np.float32(hu_to_density(bone.marrow_hu, self.calibration))
        inner = np.full(d.shape, marrow, dtype=np.float32)
        trabecular = np.nonzero(occ_in > 0)
        if trabecular[0].size and bone.texture is not None:
            idx = np.stack([t + b.start + region[a][0] + self.field.position[a] for a, (t, b) in
                            enumerate(zip(trabecular, sub))], axis=-1).astype(np.float32) * h
            loc = bone.local(self.placement.to_hand(idx))
            depth = -(inner_reference + cortex)[trabecular]
            fraction = bone.texture.bone_fraction(loc, depth, self.h)
            inner[trabecular] = marrow + (bone.texture.params.tissue_density - marrow) * fraction
        occupancy[sub] += occ_out
        contribution[sub] += (occ_out - occ_in) * np.float32(bone.cortical_density) + occ_in * inner
        if bone is self.hand.target:
            truth[sub] |= d_solid <= 0
