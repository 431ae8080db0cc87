"""The parts of a phantom that only a whole-hand field of view shows: the thumb and the palmar arch.

At the level of the second to fifth MCP joints a whole-hand field holds, besides the row of
metacarpal heads, the proximal phalanx of the thumb: radial and palmar of MC2, an oval section
smaller than a metacarpal head, its flat dorsal side turned towards the radial side, in its own
rounded lobe of soft tissue (the thenar web lies more proximally). The thumb's ray converges on the
index ray proximally and diverges from it distally. The fifth metacarpal head sits a little more
palmar than the fourth (the distal transverse arch; with the thumb palmar on the radial side the
heads lie on an arch that is concave palmarly).

Everything here is drawn from its own random stream, after the rest of the anatomy, and the thumb
and its lobe are kept clear of the cropped field of view (32 x 40 mm around MC2 and MC3), so a
cropped phantom of a given seed is the same, voxel for voxel, as before the thumb existed.
Coordinates are the generator's hand coordinates in mm: x radial (small) to ulnar, y dorsal
(small) to palmar, z distal to proximal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: worst-case reach of a cropped field on MC2's radial side beyond MC2's head (phantom._layout
#: draws 3 to 5 mm), plus a margin: the thumb and its soft tissue stay beyond it
CROP_RADIAL_REACH_MM = 5.0
CROP_CLEARANCE_MM = 1.5


@dataclass
class _Thumb:
    """The thumb's proximal phalanx: an oval tube whose axis runs parallel to the fingers proximal
    of ``z_ref`` and bends radially (and a little palmarly or dorsally) distal of it."""

    cx: float
    cy: float
    z_ref: float
    a: float  # half width of the section, mm
    b: float  # half depth
    angle: float  # in-plane rotation of the section (rad)
    tilt_x: float  # radial divergence per mm distal of z_ref (the axis moves to smaller x)
    tilt_y: float
    flare: float  # the base widens towards the thumb's MCP joint (proximally)
    cortex: float
    cortical_density: float

    def _offset(self, z):
        # the axis bends over 3 mm around z_ref: smooth, and straight proximal of it
        t = np.asarray(z, dtype=np.float32) - np.float32(self.z_ref)
        distal = np.where(t < -3.0, -t - 1.5, np.where(t < 0.0, t * t / 6.0, 0.0)).astype(np.float32)
        return distal

    def centre(self, z):
        d = self._offset(z)
        return self.cx - self.tilt_x * d, self.cy + self.tilt_y * d

    def max_radius(self) -> float:
        return max(self.a, self.b) * (1.0 + self.flare) + 0.5

    def z_range(self):
        return -math.inf, math.inf

    def depth(self, z, X, Y):
        xc, yc = self.centre(z)
        dx = X[None] - np.asarray(xc, dtype=np.float32)
        dy = Y[None] - np.asarray(yc, dtype=np.float32)
        c, s = math.cos(self.angle), math.sin(self.angle)
        u = dx * c + dy * s
        v = -dx * s + dy * c
        r = np.sqrt(u * u + v * v) + np.float32(1e-6)
        widen = 1.0 + self.flare * _smoothstep((np.asarray(z, dtype=np.float32) - self.z_ref + 2.0) / 8.0)
        a, b = self.a * widen, self.b * widen
        radius = 1.0 / np.sqrt((u / r / a) ** 2 + (v / r / b) ** 2)
        return (radius - r).astype(np.float32), None


@dataclass
class ThumbLobe:
    """The thumb's soft tissue: an oval around the thumb's axis (skin, fat, thenar muscle)."""

    thumb: _Thumb
    a: float
    b: float
    fat: float

    def reach(self) -> float:
        return max(self.a, self.b)

    def depth(self, X, Y, z: float):
        """Approximate distance (mm) inside the lobe's skin in the slice at ``z``."""
        xc, yc = self.thumb.centre(np.float32(z))
        c, s = math.cos(self.thumb.angle), math.sin(self.thumb.angle)
        dx, dy = X - np.float32(xc), Y - np.float32(yc)
        u = (dx * c + dy * s) / self.a
        v = (-dx * s + dy * c) / self.b
        return ((1.0 - np.sqrt(u * u + v * v)) * min(self.a, self.b)).astype(np.float32)


def _smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def draw_whole_hand(rng, mc2, mc5, size: float, z_score: float, hand_centre, rotation: float):
    """The thumb (bone and soft tissue) and the arch's palmar offset of MC5, from their own stream.

    ``mc2``/``mc5`` are the drawn metacarpals (hand coordinates, already placed); MC5 is moved
    palmarly here. The thumb is pushed radially when needed so that neither it nor its soft tissue
    can reach a cropped field of view, whatever the crop's draw.
    """
    mc5.cy += float(rng.uniform(0.5, 3.0))  # the arch: MC5's head a little more palmar than MC4's
    a = float(rng.uniform(4.4, 5.4) * size)
    b = a * float(rng.uniform(0.72, 0.86))
    thumb = _Thumb(
        cx=0.0, cy=0.0, z_ref=float(mc2.z_tip + rng.uniform(3.0, 6.0)),
        a=a, b=b, angle=float(rng.uniform(0.9, 1.5)),
        tilt_x=float(rng.uniform(0.2, 0.4)), tilt_y=float(rng.uniform(-0.08, 0.12)),
        flare=float(rng.uniform(0.08, 0.18)), cortex=float(rng.uniform(0.5, 0.9)),
        cortical_density=float(np.clip(950.0 + 35.0 * z_score + rng.normal(0, 25.0), 850.0, 1050.0)),
    )
    lobe = ThumbLobe(thumb=thumb, a=a * (1.0 + thumb.flare) + float(rng.uniform(3.0, 4.5)),
                     b=b * (1.0 + thumb.flare) + float(rng.uniform(3.0, 4.5)), fat=float(rng.uniform(1.0, 2.2)))
    dx = float(rng.uniform(22.0, 27.0))  # from MC2's centre, radially
    dy = float(rng.uniform(8.0, 16.0))  # palmarly
    thumb.cx, thumb.cy = mc2.cx - dx, mc2.cy + dy
    # keep clear of any cropped field: in scanner coordinates (the hand is rotated in-plane about
    # its centre) the crop starts at most CROP_RADIAL_REACH_MM radial of MC2's head
    c, s = math.cos(rotation), math.sin(rotation)
    cxh, cyh = hand_centre

    def scanner_x(x, y):
        return cxh + c * (x - cxh) - s * (y - cyh)

    crop_start = scanner_x(mc2.cx, mc2.cy) - mc2.a_head * (1 + mc2.palmar_bulge + mc2.delta + mc2.wobble_max()) \
        - CROP_RADIAL_REACH_MM
    nearest = scanner_x(thumb.cx, thumb.cy) + lobe.reach() + CROP_CLEARANCE_MM
    if nearest > crop_start:
        thumb.cx -= (nearest - crop_start) / max(c, 0.5)
    if c * thumb.tilt_x + s * thumb.tilt_y < 0.1:  # distally the thumb must move away from the crop
        thumb.tilt_y = 0.0
    return thumb, lobe


def hand_bounds(anatomy):
    """(x0, x1, y0, y1), hand coordinates (mm), holding the hand's envelope and the thumb's lobe
    (whose axis is straight proximal of ``z_ref`` and furthest from it at slice 0)."""
    (hx, hy), (ax, ay) = anatomy.hand_centre, anatomy.hand_half
    x0, x1, y0, y1 = hx - ax, hx + ax, hy - ay, hy + ay
    lobe = anatomy.thumb_lobe
    if lobe is not None:
        r = lobe.reach()
        for z in (0.0, lobe.thumb.z_ref):
            xc, yc = (float(v) for v in lobe.thumb.centre(np.float32(z)))
            x0, x1 = min(x0, xc - r), max(x1, xc + r)
            y0, y1 = min(y0, yc - r), max(y1, yc + r)
    return x0, x1, y0, y1


def add_lobe(renderer, out: np.ndarray, zs: np.ndarray) -> None:
    """Put the thumb's soft tissue into ``out`` (slices at ``zs`` mm of the renderer's box), only
    where the hand's own envelope does not already cover the pixel."""
    from .phantom_anatomy import FAT, MUSCLE, SKIN, _soft
    from .phantom_spec import SCANNER_CALIBRATIONS

    lobe = renderer.anat.thumb_lobe
    window = renderer._bone_window(_LobeExtent(lobe), float(zs.min()), float(zs.max()))
    if window is None:
        return
    sy, sx = window
    X, Y = renderer.Xh[sy, sx], renderer.Yh[sy, sx]
    envelope = renderer.envelope[sy, sx]
    air = np.float32(SCANNER_CALIBRATIONS[renderer.spec.scanner].density_intercept)
    for k, z in enumerate(zs):
        depth = lobe.depth(X, Y, float(z))
        inside = _soft(depth, renderer.h)
        where = inside > envelope
        if not where.any():
            continue
        tissue = np.where(depth < 1.0, SKIN, np.where(depth < 1.0 + lobe.fat, FAT, MUSCLE)).astype(np.float32)
        region = out[k, sy, sx]
        region[where] = (air + (tissue - air) * inside)[where]


@dataclass
class _LobeExtent:
    """The lobe as the renderer's window finder sees a bone: a centre line and a radius."""

    lobe: ThumbLobe

    def z_range(self):
        return -math.inf, math.inf

    def centre(self, z):
        return self.lobe.thumb.centre(z)

    def max_radius(self) -> float:
        return self.lobe.reach()


def thumb_info(anatomy) -> dict | None:
    """The thumb as drawn (hand coordinates, right-hand convention), for the truth JSON."""
    lobe = anatomy.thumb_lobe
    if lobe is None:
        return None
    thumb, mc2 = lobe.thumb, anatomy.bones[0]
    return {
        "bone": "proximal phalanx of the thumb (in whole-hand fields of view only)",
        "width_mm": 2 * thumb.a, "depth_mm": 2 * thumb.b,
        "radial_of_mc2_mm": mc2.cx - thumb.cx, "palmar_of_mc2_mm": thumb.cy - mc2.cy,
        "straight_from_z_mm": thumb.z_ref, "radial_divergence_per_mm_distal": thumb.tilt_x,
    }
