"""Synthetic HR-pQCT scans of the metacarpophalangeal (MCP) joint with known truth.

A phantom is an XtremeCT-style calibrated int16 volume of a right or left hand at the level of the
second and third MCP joints, with the second metacarpal (MC2) as the bone of interest and its
periosteal envelope as the truth mask. Anatomy is defined in millimetres by analytic signed
distances (so any voxel size gives the same bones), rendered slab by slab, blurred with the
scanner's point spread function, given motion artefacts and noise, and quantised with the
scanner's calibration.

Axes are (z, y, x). z runs along the bones from distal (slice 0: base of the proximal phalanx,
joint space) to proximal (MC2 head, neck, shaft); y runs dorsal (small y) to palmar; x runs, for a
right hand, from the radial side (MC2) to the ulnar side (MC3, MC4, MC5). A left hand is the exact
mirror image of the right hand in x.

Truth convention: the mask is the MC2 periosteal envelope, solid (cortex plus marrow space), as an
expert contour would draw it. An erosion cavity opens to the outside of the bone, so it is NOT bone:
the truth mask excludes it (the contour follows the eroded surface into the pit).
See docs/phantoms.md.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import ndimage, sparse

from . import phantom_pose
from .errors import CancelledError, VbmdError
from .scan import UNIT_NATIVE, Calibration, Scan

GENERATOR_NAME = "napari-vbmd phantom"
GENERATOR_VERSION = 3  # 2: noise correlated like a real XtremeCT scan's; 3: whole-hand fields gain the thumb
#: cropped fields are the same voxels since this version (the thumb never reaches them): caches of them stay valid
CROPPED_UNCHANGED_SINCE = 2

NATIVE_SPACING_MM = 0.082
FULL_FOV_VOXELS = 1536
FULL_FOV_MM = FULL_FOV_VOXELS * NATIVE_SPACING_MM  # 125.952 mm, the XtremeCT field of view
CROPPED_FOV_MM = (32.0, 40.0)  # (y, x): MC2 and MC3 heads with their soft tissue
MAX_SLICES = 320
DEFAULT_SLICES = 110

#: Density calibrations of the two HR-pQCT generations, as their AIM processing logs state them.
SCANNER_CALIBRATIONS = {
    "xtremect1": Calibration(density_slope=1441.13599, density_intercept=-356.445007, mu_scaling=8192.0, mu_water=0.2464),
    "xtremect2": Calibration(density_slope=1632.71997, density_intercept=-396.135986, mu_scaling=8192.0, mu_water=0.2402),
}
SCANNER_NAMES = {"xtremect1": "XtremeCT", "xtremect2": "XtremeCT II"}
#: Noise SD at 82 um, mg HA/cm3 (range drawn per phantom); the second generation is quieter.
SCANNER_NOISE_MG = {"xtremect1": (40.0, 52.0), "xtremect2": (30.0, 40.0)}

# Soft tissue densities, mg HA/cm3 (from their Hounsfield units with the XtremeCT calibration).
FAT = -38.0
MUSCLE = 18.0
SKIN = 28.0
TENDON = 40.0
SYNOVIUM = 32.0  # what fills an erosion

# Study cohort (Folle et al. 2021): D100 162.5-377.0, mean 279.3, SD 42.8 mg HA/cm3.
COHORT_D100_MEAN = 279.0
COHORT_D100_SD = 43.0
COHORT_D100_RANGE = (160.0, 375.0)

VARIATIONS = ("study", "broad")

_SLAB = 16  # slices rendered at once; fixed so noise streams do not depend on memory

Progress = Callable[[int, int, str], None]


# ---------------------------------------------------------------------------------------------
# Specification and result
# ---------------------------------------------------------------------------------------------
@dataclass
class PhantomSpec:
    """What phantom to make. Anatomy depends on ``seed`` only (not on hand, field or voxel size)."""

    seed: int = 0
    hand: str = "right"  # "left" or "right"
    fov: str = "cropped"  # "cropped" (MC2 + MC3 region) or "full" (1536 x 1536 at 82 um)
    n_slices: int = DEFAULT_SLICES
    spacing_mm: float = NATIVE_SPACING_MM  # isotropic voxel size
    motion_grade: int = 0  # 0 none, 1-3 increasing streaks, ghosting and blur
    erosions: int = 0  # cortical erosions on MC2
    d100_target: float | None = None  # None: drawn like the study's patients
    scanner: str = "xtremect1"  # "xtremect1" or "xtremect2"
    hand_in_header: bool = True  # False: the image says nothing of its hand (like a scanner's file)
    # A repeat scan of the same anatomy (off: None): the hand repositioned in-plane (rotation +-8 deg,
    # shift +-2 mm, drawn from this seed), fresh noise and motion. See phantom_pose.py.
    pose_seed: int | None = None
    # "study": the ranges of the study's simulated scanner and hands; "broad": domain randomisation for
    # training (phantom_broad.py: thinner and thicker cortices, wider blur and noise, other textures, ...)
    variation: str = "study"

    def validated(self) -> "PhantomSpec":
        def bad(message):
            raise VbmdError(f"phantom: {message}")

        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            bad(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.hand not in ("left", "right"):
            bad(f"hand must be 'left' or 'right', got {self.hand!r}")
        if self.fov not in ("cropped", "full"):
            bad(f"field of view must be 'cropped' or 'full', got {self.fov!r}")
        if isinstance(self.n_slices, bool) or not isinstance(self.n_slices, (int, np.integer)):
            bad(f"number of slices must be an integer, got {self.n_slices!r}")
        if not 4 <= self.n_slices <= MAX_SLICES:
            bad(f"number of slices must be between 4 and {MAX_SLICES}, got {self.n_slices}")
        try:
            spacing = float(self.spacing_mm)
        except (TypeError, ValueError):
            bad(f"spacing must be a number of millimetres, got {self.spacing_mm!r}")
        if not (math.isfinite(spacing) and 0.04 <= spacing <= 0.5):
            bad(f"spacing must be between 0.04 and 0.5 mm, got {self.spacing_mm!r}")
        if isinstance(self.motion_grade, bool) or self.motion_grade not in (0, 1, 2, 3):
            bad(f"motion grade must be 0, 1, 2 or 3, got {self.motion_grade!r}")
        if isinstance(self.erosions, bool) or not isinstance(self.erosions, (int, np.integer)) or not 0 <= self.erosions <= 6:
            bad(f"number of erosions must be between 0 and 6, got {self.erosions!r}")
        if self.d100_target is not None:
            try:
                target = float(self.d100_target)
            except (TypeError, ValueError):
                bad(f"D100 target must be a number, got {self.d100_target!r}")
            if not (math.isfinite(target) and 80.0 <= target <= 500.0):
                bad(f"D100 target must be between 80 and 500 mg HA/cm3, got {self.d100_target!r}")
        if self.scanner not in SCANNER_CALIBRATIONS:
            bad(f"scanner must be one of {', '.join(SCANNER_CALIBRATIONS)}, got {self.scanner!r}")
        if not isinstance(self.hand_in_header, (bool, np.bool_)):
            bad(f"hand_in_header must be true or false, got {self.hand_in_header!r}")
        if self.pose_seed is not None and (isinstance(self.pose_seed, bool) or not isinstance(self.pose_seed, (int, np.integer))
                                           or self.pose_seed < 0):
            bad(f"pose seed must be a non-negative integer, got {self.pose_seed!r}")
        if self.variation not in VARIATIONS:
            bad(f"variation must be one of {', '.join(VARIATIONS)}, got {self.variation!r}")
        return dataclasses.replace(
            self,
            seed=int(self.seed),
            n_slices=int(self.n_slices),
            spacing_mm=spacing,
            motion_grade=int(self.motion_grade),
            erosions=int(self.erosions),
            d100_target=None if self.d100_target is None else float(self.d100_target),
            hand_in_header=bool(self.hand_in_header),
            pose_seed=None if self.pose_seed is None else int(self.pose_seed),
        )

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        if out["hand_in_header"]:  # the default is left out, so specs (and caches) from before it match
            del out["hand_in_header"]
        if out["pose_seed"] is None:  # unposed phantoms keep the spec they always had
            del out["pose_seed"]
        if out["variation"] == "study":  # study phantoms keep the spec they always had
            del out["variation"]
        return out


@dataclass
class Phantom:
    image: Scan  # int16 native, calibrated
    truth: Scan  # uint8 0/1 mask of MC2, same grid
    truth_info: dict
    spec: PhantomSpec


# ---------------------------------------------------------------------------------------------
# Anatomy
# ---------------------------------------------------------------------------------------------
def _smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _soft(d, h):
    """Fraction of a voxel of size h inside a surface at signed distance d (positive inside)."""
    return np.clip(d / h + 0.5, 0.0, 1.0)


@dataclass
class _Metacarpal:
    """A metacarpal: domed head, neck, shaft; signed distances in hand coordinates (mm)."""

    name: str
    cx: float
    cy: float
    z_tip: float
    a_head: float
    b_head: float
    a_shaft: float
    b_shaft: float
    dome_len: float
    dome_q: float
    neck_start: float
    neck_end: float
    tilt_x: float
    tilt_y: float
    bow_x: float
    bow_y: float
    twist: float
    palmar_bulge: float
    delta: float
    cortex_head: float
    cortex_shaft: float
    cortical_density: float
    harmonics: tuple = ()  # (k, amplitude, phase): an individual, not quite elliptic outline
    erosions: list = field(default_factory=list)

    def wobble_max(self) -> float:
        return float(sum(abs(a) for _, a, _ in self.harmonics))

    def centre(self, z):
        s = z - self.z_tip
        return self.cx + self.tilt_x * s + self.bow_x * s * s, self.cy + self.tilt_y * s + self.bow_y * s * s

    def max_radius(self) -> float:
        return max(self.a_head, self.b_head) * (1 + self.palmar_bulge + self.delta + self.wobble_max()) + 0.5

    def z_range(self):
        return self.z_tip - 0.5, math.inf

    def neck(self, s):
        return _smoothstep((s - self.neck_start) / (self.neck_end - self.neck_start))

    def cortex(self, s):
        return self.cortex_head + (self.cortex_shaft - self.cortex_head) * _smoothstep(
            (s - self.neck_start + 1.0) / (self.neck_end - self.neck_start + 2.0)
        )

    def depth(self, z, X, Y):
        """Signed distance (mm, positive inside) to the periosteal surface, z (nz,1,1), X/Y (ny,nx)."""
        s = (z - self.z_tip).astype(np.float32)
        xc, yc = self.centre(z)
        dx = X[None] - xc
        dy = Y[None] - yc
        c, sn = math.cos(self.twist), math.sin(self.twist)
        u = dx * c + dy * sn
        v = -dx * sn + dy * c
        r = np.sqrt(u * u + v * v) + np.float32(1e-6)
        ct, st = u / r, v / r
        w = self.neck(s)
        a = self.a_head + (self.a_shaft - self.a_head) * w
        b = self.b_head + (self.b_shaft - self.b_head) * w
        radius = 1.0 / np.sqrt((ct / a) ** 2 + (st / b) ** 2)
        # condyles widen the head palmarly; the shaft becomes a triangle ("delta") with a palmar ridge
        sin3 = 3 * st - 4 * st**3
        shape = 1.0 + self.palmar_bulge * (1 - w) * st - self.delta * w * sin3
        ck, sk = ct, st
        for k in range(1, max((k for k, _, _ in self.harmonics), default=0) + 1):
            if k > 1:
                ck, sk = ck * ct - sk * st, sk * ct + ck * st
            for kk, amplitude, phase in self.harmonics:
                if kk == k:
                    shape = shape + amplitude * (ck * math.cos(phase) + sk * math.sin(phase))
        radius *= shape
        depth = (radius - r).astype(np.float32)
        dome = np.flatnonzero(s[:, 0, 0] < self.dome_len)
        if dome.size:
            # the domed head: a superellipsoid cap; distance ~ (1 - g) / |grad g|
            q = self.dome_q
            rho = r[dome] / radius[dome] if radius.shape[0] > 1 else r[dome] / radius
            rad = radius[dome] if radius.shape[0] > 1 else radius
            t = np.maximum((self.dome_len - s[dome]) / self.dome_len, 0.0).astype(np.float32)
            rho_q1 = rho ** np.float32(q - 1)
            t_q1 = t ** np.float32(q - 1)
            g = (rho_q1 * rho + t_q1 * t) ** np.float32(1.0 / q)
            grad = g ** np.float32(1.0 - q) * np.sqrt((rho_q1 / rad) ** 2 + (t_q1 / self.dome_len) ** 2)
            depth[dome] = np.clip((1.0 - g) / np.maximum(grad, 1e-6), -50.0, 50.0)
        return depth, s


@dataclass
class _Phalanx:
    """Base of a proximal phalanx: a tube whose cupped end hugs the metacarpal head across a gap."""

    mc: _Metacarpal
    a: float
    b: float
    gap: float
    rim: float
    flex_x: float
    flex_y: float
    cortex: float
    cortical_density: float

    def max_radius(self) -> float:
        return max(self.a, self.b) + 0.5

    def z_range(self):
        return -math.inf, self.mc.z_tip + self.rim + 0.5

    def centre(self, z):
        x0, y0 = self.mc.centre(self.mc.z_tip)
        s = z - self.mc.z_tip
        return x0 + self.flex_x * s, y0 + self.flex_y * s

    def depth(self, z, X, Y):
        xc, yc = self.centre(z)
        u = X[None] - xc
        v = Y[None] - yc
        r = np.sqrt(u * u + v * v) + np.float32(1e-6)
        # the base flares towards the joint and narrows distally (z decreasing)
        taper = 1.0 - 0.22 * _smoothstep((self.mc.z_tip - z) / 9.0)
        a, b = self.a * taper, self.b * taper
        radius = 1.0 / np.sqrt((u / r / a) ** 2 + (v / r / b) ** 2)
        d_tube = (radius - r).astype(np.float32)
        d_mc, _ = self.mc.depth(z, X, Y)
        d_cup = -d_mc - self.gap
        d_rim = (self.mc.z_tip + self.rim - z).astype(np.float32)
        return np.minimum(np.minimum(d_tube, d_cup), d_rim), None


@dataclass
class _Erosion:
    centre: tuple  # (x, y, z) hand coordinates, mm
    radii: tuple  # (rx, ry, rz) mm

    def depth(self, z, X, Y):
        rx, ry, rz = self.radii
        dist = np.sqrt(((X[None] - self.centre[0]) / rx) ** 2 + ((Y[None] - self.centre[1]) / ry) ** 2
                       + ((z - self.centre[2]) / rz) ** 2)
        return ((1.0 - dist) * min(self.radii)).astype(np.float32)


def _draw_metacarpal(rng, name, scale, cx, cy, z_tip) -> _Metacarpal:
    a_head = rng.uniform(6.9, 8.0) * scale
    b_head = a_head * rng.uniform(0.82, 0.94)
    dome_len = rng.uniform(4.6, 6.0) * scale
    neck_start = dome_len + rng.uniform(2.0, 4.0)
    return _Metacarpal(
        name=name, cx=cx, cy=cy, z_tip=z_tip,
        a_head=a_head, b_head=b_head,
        a_shaft=a_head * rng.uniform(0.52, 0.62), b_shaft=b_head * rng.uniform(0.62, 0.72),
        dome_len=dome_len, dome_q=rng.uniform(2.0, 2.6),
        neck_start=neck_start, neck_end=neck_start + rng.uniform(6.0, 9.0),
        tilt_x=rng.normal(0, 0.035), tilt_y=rng.normal(0, 0.035),
        bow_x=rng.normal(0, 0.0012), bow_y=-abs(rng.normal(0, 0.0025)),
        twist=rng.normal(0, 0.15), palmar_bulge=rng.uniform(0.03, 0.09), delta=rng.uniform(0.05, 0.11),
        cortex_head=rng.uniform(0.30, 0.45), cortex_shaft=rng.uniform(1.0, 1.8),
        cortical_density=0.0,
        harmonics=tuple((k, float(rng.uniform(0.01, 0.035)), float(rng.uniform(0, 2 * math.pi))) for k in (2, 3, 4, 5)),
    )


@dataclass
class _Anatomy:
    bones: list  # (_Metacarpal | _Phalanx); bones[0] is MC2
    hand_centre: tuple
    hand_half: tuple
    hand_power: float
    fat: float
    rotation: float  # in-plane rotation of the hand about its centre (radians)
    tendons: list  # (x, y, rx, ry) hand coordinates
    trabecular_wavelength: float
    tissue_density: float
    marrow: float
    d100_target: float
    noise_mg: float
    psf_sigma_mm: float
    thumb_lobe: object = None  # phantom_hand.ThumbLobe: the thumb's soft tissue (its bone is in bones)
    # the broad variation's draws (phantom_broad.py); the defaults are the study's fixed values
    soft_tissue: dict | None = None  # fat, muscle, skin, tendon (mg HA/cm3) and skin_mm
    texture_kind: str = "plate"  # "plate": |n| < t of one band-pass field; "rod": of two at once
    texture_bandwidth: float = 0.35
    texture_z_stretch: float = 1.4
    endosteal_irregularity: float = 0.25


def _draw_anatomy(spec: PhantomSpec, rng_anat, rng_density, rng_scanner, rng_erosion, rng_hand=None,
                  rng_broad=None) -> _Anatomy:
    from .phantom_broad import Broadening

    broad = Broadening(rng_broad) if spec.variation == "broad" else None
    centre = FULL_FOV_MM / 2
    size = rng_anat.uniform(0.9, 1.08)  # patient size
    z_tip2 = rng_anat.uniform(1.6, 2.6)
    mc2 = _draw_metacarpal(rng_anat, "MC2", size, 0.0, 0.0, z_tip2)
    mc3 = _draw_metacarpal(rng_anat, "MC3", size * rng_anat.uniform(0.98, 1.06), 0.0, 0.0,
                           z_tip2 - rng_anat.uniform(0.3, 2.5))
    mc4 = _draw_metacarpal(rng_anat, "MC4", size * rng_anat.uniform(0.84, 0.92), 0.0, 0.0,
                           z_tip2 + rng_anat.uniform(0.0, 2.5))
    mc5 = _draw_metacarpal(rng_anat, "MC5", size * rng_anat.uniform(0.80, 0.88), 0.0, 0.0,
                           z_tip2 + rng_anat.uniform(2.0, 5.0))
    if broad:
        broad.metacarpals([mc2, mc3, mc4, mc5])
    # side by side, radial to ulnar, along a shallow palmar arch; MC3 sometimes close to MC2
    gap23 = rng_anat.choice([rng_anat.uniform(0.6, 1.5), rng_anat.uniform(1.5, 5.0)], p=[0.3, 0.7])
    if broad:
        gap23 = broad.gap_mc2_mc3()
    mc3.cx = mc2.cx + mc2.a_head + mc3.a_head + gap23
    mc3.cy = mc2.cy + rng_anat.normal(0.3, 1.0)
    mc4.cx = mc3.cx + mc3.a_head + mc4.a_head + rng_anat.uniform(1.5, 5.0)
    mc4.cy = mc3.cy + rng_anat.uniform(0.5, 2.5)
    mc5.cx = mc4.cx + mc4.a_head + mc5.a_head + rng_anat.uniform(1.5, 5.0)
    mc5.cy = mc4.cy + rng_anat.uniform(1.0, 3.5)
    metacarpals = [mc2, mc3, mc4, mc5]

    # hand envelope: soft tissue thin dorsally, thick palmarly, a web on the radial side
    left = mc2.cx - mc2.a_head - rng_anat.uniform(8.0, 14.0)
    right = mc5.cx + mc5.a_head + rng_anat.uniform(6.0, 10.0)
    top = min(m.cy - m.b_head for m in metacarpals) - rng_anat.uniform(2.5, 4.5)
    bottom = max(m.cy + m.b_head for m in metacarpals) + rng_anat.uniform(8.0, 13.0)
    shift_x = centre - (left + right) / 2 + rng_anat.uniform(-6.0, 6.0)
    shift_y = centre - (top + bottom) / 2 + rng_anat.uniform(-6.0, 6.0)
    for m in metacarpals:
        m.cx += shift_x
        m.cy += shift_y
    hand_centre = ((left + right) / 2 + shift_x, (top + bottom) / 2 + shift_y)
    hand_half = ((right - left) / 2, (bottom - top) / 2)

    tendons = []
    for m in metacarpals:
        tendons.append((m.cx + rng_anat.normal(0, 0.8), m.cy - m.b_head - 1.4, 2.0 * size, 0.75))  # extensor
        tendons.append((m.cx + rng_anat.normal(0, 0.8), m.cy + m.b_head + 2.8, 3.4 * size, 2.2 * size))  # flexors

    phalanges = []
    for m in metacarpals:
        phalanges.append(_Phalanx(
            mc=m, a=m.a_head * rng_anat.uniform(0.80, 0.90), b=m.b_head * rng_anat.uniform(0.74, 0.84),
            gap=rng_anat.uniform(1.0, 2.0), rim=rng_anat.uniform(1.0, 2.2),
            flex_x=rng_anat.normal(0, 0.05), flex_y=rng_anat.normal(-0.08, 0.08),
            cortex=rng_anat.uniform(0.3, 0.45), cortical_density=0.0,
        ))
    if broad:
        broad.phalanges(phalanges)

    # density: D100 like the study's patients; denser bones have denser cortex
    if spec.d100_target is None:
        target = float(np.clip(rng_density.normal(COHORT_D100_MEAN, COHORT_D100_SD), *COHORT_D100_RANGE))
        if broad:
            target = broad.d100_target()
    else:
        target = float(spec.d100_target)
        rng_density.normal()
    z_score = (target - COHORT_D100_MEAN) / COHORT_D100_SD
    for bone in metacarpals + phalanges:
        bone.cortical_density = float(np.clip(950.0 + 35.0 * z_score + rng_density.normal(0, 25.0), 850.0, 1050.0))
        if broad:
            bone.cortical_density = broad.cortical_density(z_score)

    _draw_erosions(mc2, spec.erosions, rng_erosion)
    for bone in metacarpals + phalanges:
        _plain_floats(bone)
        for erosion in getattr(bone, "erosions", ()):
            _plain_floats(erosion)

    lo, hi = SCANNER_NOISE_MG[spec.scanner]
    anatomy = _Anatomy(
        bones=[mc2, mc3, mc4, mc5] + phalanges,
        hand_centre=hand_centre, hand_half=hand_half, hand_power=rng_anat.uniform(2.6, 3.6),
        fat=rng_anat.uniform(1.2, 3.0), rotation=rng_anat.normal(0, 0.08), tendons=tendons,
        trabecular_wavelength=rng_density.uniform(0.75, 1.05), tissue_density=rng_density.uniform(900.0, 1000.0),
        marrow=rng_density.uniform(-10.0, 25.0), d100_target=target,
        noise_mg=rng_scanner.uniform(lo, hi), psf_sigma_mm=rng_scanner.uniform(0.085, 0.12),
    )
    if broad:
        broad.anatomy(anatomy)
    if rng_hand is not None:  # the thumb and the arch: their own stream, after everything else
        from .phantom_hand import draw_whole_hand

        cy5 = mc5.cy
        thumb, anatomy.thumb_lobe = draw_whole_hand(rng_hand, mc2, mc5, size, z_score, anatomy.hand_centre,
                                                     anatomy.rotation)
        anatomy.tendons[6:8] = [(x, y + mc5.cy - cy5, rx, ry) for x, y, rx, ry in anatomy.tendons[6:8]]
        anatomy.bones.append(thumb)
    return anatomy


def _plain_floats(obj) -> None:
    """NumPy float64 scalars to Python floats, so geometry on float32 grids stays float32."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, np.floating):
            setattr(obj, f.name, float(value))
        elif isinstance(value, tuple) and any(isinstance(v, np.floating) for v in value):
            setattr(obj, f.name, tuple(float(v) if isinstance(v, np.floating) else v for v in value))


def _draw_erosions(mc: _Metacarpal, count: int, rng) -> None:
    """Pits through the cortex of the head, where RA erodes: the bare areas near the joint margin."""
    for _ in range(count):
        s = rng.uniform(1.8, min(mc.dome_len + 3.5, mc.neck_start + 1.0))
        # radial side (small x for a right hand), dorsal or palmar; rarely ulnar
        theta = rng.choice([math.pi, -math.pi / 2, math.pi / 2, 0.0], p=[0.45, 0.25, 0.15, 0.15])
        theta += rng.normal(0, 0.35)
        z = mc.z_tip + s
        xc, yc = mc.centre(z)
        # walk out from the axis to the surface along theta
        radii = np.linspace(0.0, mc.max_radius() + 2.0, 400, dtype=np.float32)
        X = (xc + radii * math.cos(theta)).astype(np.float32)[None, :]
        Y = (yc + radii * math.sin(theta)).astype(np.float32)[None, :]
        d, _ = mc.depth(np.array([[[z]]], dtype=np.float32), X, Y)
        inside = np.flatnonzero(d[0, 0] > 0)
        r_surface = float(radii[inside[-1]]) if inside.size else mc.a_head
        size = rng.uniform(0.8, 2.0)
        r_centre = r_surface - size * rng.uniform(0.1, 0.5)
        mc.erosions.append(_Erosion(
            centre=(xc + r_centre * math.cos(theta), yc + r_centre * math.sin(theta), z),
            radii=(size * rng.uniform(0.8, 1.2), size * rng.uniform(0.8, 1.2), size * rng.uniform(0.9, 1.5)),
        ))


# ---------------------------------------------------------------------------------------------
# Textures
# ---------------------------------------------------------------------------------------------
def _band_pass_tile(rng, shape, spacing, wavelength, rel_bandwidth, z_stretch):
    """Periodic Gaussian noise with a ring spectrum: sheets and rods when thresholded near zero."""
    white = rng.standard_normal(shape, dtype=np.float32)
    fz = np.fft.fftfreq(shape[0], spacing)[:, None, None] * z_stretch
    fy = np.fft.fftfreq(shape[1], spacing)[None, :, None]
    fx = np.fft.rfftfreq(shape[2], spacing)[None, None, :]
    f = np.sqrt(fz * fz + fy * fy + fx * fx)
    f0 = min(1.0 / wavelength, 0.35 / spacing)
    gain = np.exp(-0.5 * ((f - f0) / (rel_bandwidth * f0)) ** 2)
    out = np.fft.irfftn(np.fft.rfftn(white) * gain, s=shape, axes=(0, 1, 2)).astype(np.float32)
    out /= out.std() + 1e-12
    return out


def _low_pass_tile(rng, shape, spacing, wavelength):
    white = rng.standard_normal(shape, dtype=np.float32)
    fz = np.fft.fftfreq(shape[0], spacing)[:, None, None]
    fy = np.fft.fftfreq(shape[1], spacing)[None, :, None]
    fx = np.fft.rfftfreq(shape[2], spacing)[None, None, :]
    f2 = fz * fz + fy * fy + fx * fx
    out = np.fft.irfftn(np.fft.rfftn(white) * np.exp(-0.5 * f2 * wavelength**2), s=shape, axes=(0, 1, 2)).astype(np.float32)
    out /= out.std() + 1e-12
    return out


class _Textures:
    def __init__(self, rng, spacing, wavelength, bandwidth=0.35, z_stretch=1.4, kind="plate"):
        n = 128
        self.shape = (n, n, n)
        self.trab = _band_pass_tile(rng, self.shape, spacing, wavelength, bandwidth, z_stretch)
        self.low = _low_pass_tile(rng, self.shape, spacing, 2.0)
        if kind == "rod":  # where two sheet families cross: rods
            other = _band_pass_tile(rng, self.shape, spacing, wavelength, bandwidth, z_stretch)
            self.trab = np.maximum(np.abs(self.trab), np.abs(other))
        self.abs_sorted = np.sort(np.abs(self.trab[::2, ::2, ::2]), axis=None)
        self.offsets = {}
        self.rng = rng

    def threshold(self, fraction):
        """|n| below which the given fraction of the tile lies."""
        k = int(np.clip(fraction, 0.0, 1.0) * (self.abs_sorted.size - 1))
        return float(self.abs_sorted[k])

    def sample(self, tile, key, iz, iy, ix):
        if key not in self.offsets:
            self.offsets[key] = tuple(int(v) for v in self.rng.integers(0, 128, size=3))
        oz, oy, ox = self.offsets[key]
        n = self.shape[0]
        return tile[np.ix_((iz + oz) % n, (iy + oy) % n, (ix + ox) % n)]

    def sample_at(self, tile, key, iz, fy, fx):
        """Like ``sample``, at fractional in-plane indices fy, fx (ny, nx) (nearest voxel)."""
        if key not in self.offsets:
            self.offsets[key] = tuple(int(v) for v in self.rng.integers(0, 128, size=3))
        return phantom_pose.sample_tile_at(tile, self.offsets[key], iz, fy, fx)


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
@dataclass
class _Grid:
    spacing: float
    n_slices: int
    full_n: int  # in-plane size of the full field of view at this spacing
    box: tuple  # (y0, y1, x0, x1): rendered region in full-field voxel indices
    out_origin_yx: tuple  # full-field voxel index of the output's (0, 0)
    out_shape: tuple  # (nz, ny, nx)
    pose_rotation: float = 0.0  # a repeat scan's extra in-plane rotation (radians; the anatomy carries it)
    pose_shift_mm: tuple = (0.0, 0.0)  # (y, x): the hand moved within the fixed field of view


class _Renderer:
    def __init__(self, spec: PhantomSpec, anatomy: _Anatomy, textures: _Textures, grid: _Grid, trab_fraction: float):
        self.spec = spec
        self.anat = anatomy
        self.tex = textures
        self.grid = grid
        self.h = grid.spacing
        self.trab_fraction = trab_fraction
        y0, y1, x0, x1 = grid.box
        ys = (np.arange(y0, y1, dtype=np.float32)) * self.h - np.float32(grid.pose_shift_mm[0])
        xs = (np.arange(x0, x1, dtype=np.float32)) * self.h - np.float32(grid.pose_shift_mm[1])
        self.Ys, self.Xs = np.meshgrid(ys, xs, indexing="ij")
        # scanner -> hand coordinates (hand rotated in-plane about its centre)
        cxh, cyh = anatomy.hand_centre
        c, s = math.cos(anatomy.rotation), math.sin(anatomy.rotation)
        self.Xh = (cxh + c * (self.Xs - cxh) + s * (self.Ys - cyh)).astype(np.float32)
        self.Yh = (cyh - s * (self.Xs - cxh) + c * (self.Ys - cyh)).astype(np.float32)
        self.soft = self._soft_tissue()

    # bone boxes in output-box indices (rotation-safe: by the circle that holds the section)
    def _bone_window(self, bone, z0, z1):
        lo, hi = bone.z_range()
        if z1 < lo or z0 > hi:
            return None
        zs = np.array([max(z0, lo if math.isfinite(lo) else z0), min(z1, hi if math.isfinite(hi) else z1)])
        xc, yc = bone.centre(zs)
        r = bone.max_radius() + 1.0
        cxh, cyh = self.anat.hand_centre
        c, s = math.cos(self.anat.rotation), math.sin(self.anat.rotation)
        # hand -> scanner: inverse rotation
        xs = cxh + c * (np.asarray(xc) - cxh) - s * (np.asarray(yc) - cyh) + self.grid.pose_shift_mm[1]
        ys = cyh + s * (np.asarray(xc) - cxh) + c * (np.asarray(yc) - cyh) + self.grid.pose_shift_mm[0]
        y0, y1, x0, x1 = self.grid.box
        iy0 = max(int(math.floor((ys.min() - r) / self.h)) - y0, 0)
        iy1 = min(int(math.ceil((ys.max() + r) / self.h)) + 1 - y0, y1 - y0)
        ix0 = max(int(math.floor((xs.min() - r) / self.h)) - x0, 0)
        ix1 = min(int(math.ceil((xs.max() + r) / self.h)) + 1 - x0, x1 - x0)
        if iy1 <= iy0 or ix1 <= ix0:
            return None
        return slice(iy0, iy1), slice(ix0, ix1)

    def _soft_tissue(self):
        a = self.anat
        (hx, hy), (ax, ay) = a.hand_centre, a.hand_half
        p = a.hand_power
        u = np.abs(self.Xh - hx) / ax
        v = np.abs(self.Yh - hy) / ay
        level = (u**p + v**p) ** (1.0 / p)
        depth = (1.0 - level) * min(ax, ay)  # approximate distance inside the skin, mm
        inside = _soft(depth, self.h)
        st = a.soft_tissue or {"fat": FAT, "muscle": MUSCLE, "skin": SKIN, "tendon": TENDON, "skin_mm": 1.0}
        skin_mm = st["skin_mm"]
        tissue = np.where(depth < skin_mm, st["skin"], np.where(depth < skin_mm + a.fat, st["fat"], st["muscle"]))
        tissue = tissue.astype(np.float32)
        # soften the fat layer's edges
        tissue = ndimage.gaussian_filter(tissue, 0.15 / self.h)
        for tx, ty, rx, ry in a.tendons:
            d = (1.0 - np.sqrt(((self.Xh - tx) / rx) ** 2 + ((self.Yh - ty) / ry) ** 2)) * min(rx, ry)
            tissue += (st["tendon"] - st["muscle"]) * _soft(d, self.h) * (depth > skin_mm)
        air = SCANNER_CALIBRATIONS[self.spec.scanner].density_intercept
        self.envelope = inside  # how much of each pixel the hand's envelope covers (the thumb's lobe fills the rest)
        return (air + (tissue - air) * inside).astype(np.float32)

    def design(self, k0, k1, want_truth=False):
        """Noise-free densities of slices k0..k1 (may extend past the volume), and MC2's truth."""
        h = self.h
        z = (np.arange(k0, k1, dtype=np.float32) * h)[:, None, None]
        iz = np.arange(k0, k1)
        out = np.broadcast_to(self.soft, (k1 - k0,) + self.soft.shape).copy()
        if self.anat.thumb_lobe is not None:
            from .phantom_hand import add_lobe

            add_lobe(self, out, z[:, 0, 0])
        truth = np.zeros(out.shape, dtype=bool) if want_truth else None
        inner = np.zeros(out.shape, dtype=bool) if want_truth else None
        stats = {"cortex_mm3": 0.0}
        y0, _, x0, _ = self.grid.box
        for index, bone in enumerate(self.anat.bones):
            window = self._bone_window(bone, float(z.min()), float(z.max()))
            if window is None:
                continue
            sy, sx = window
            X, Y = self.Xh[sy, sx], self.Yh[sy, sx]
            depth, s = bone.depth(z, X, Y)
            if not (depth > -h).any():
                continue
            is_mc = isinstance(bone, _Metacarpal)
            t_cort = bone.cortex(s) if is_mc else np.float32(bone.cortex)
            low = self._texture(self.tex.low, (index, "low"), iz, sy, sx)
            # endosteal surface is irregular (trabecularised inner cortex)
            t_local = t_cort * (1.0 + self.anat.endosteal_irregularity * low)
            solid = _soft(depth, h)
            interior = _soft(depth - t_local, h)
            cortex = solid - interior
            cavity = np.zeros_like(depth)
            if is_mc:
                for erosion in bone.erosions:
                    cavity = np.maximum(cavity, _soft(erosion.depth(z, X, Y), h))
            keep = 1.0 - cavity
            trab = self._texture(self.tex.trab, (index, "trab"), iz, sy, sx)
            fraction = self.trab_fraction * (1.0 + 0.25 * low)
            tau = self.tex.threshold(float(np.clip(self.trab_fraction, 0.01, 0.9)))
            # subchondral and endosteal trabeculae are denser: thicker near the cortex
            denser = 1.0 + 0.8 * np.exp(-np.maximum(depth - t_local, 0.0) / 0.8)
            tau_local = tau * (fraction / max(self.trab_fraction, 1e-6)) * denser
            indicator = np.clip((tau_local - np.abs(trab)) / (0.5 * tau) + 0.5, 0.0, 1.0)
            marrow = self.anat.marrow
            bone_density = (cortex * bone.cortical_density * (1.0 + 0.03 * low)
                            + interior * (marrow + (self.anat.tissue_density - marrow) * indicator))
            region = out[:, sy, sx]
            soft = region.copy()
            region *= 1.0 - solid
            region += bone_density * keep + solid * cavity * (0.5 * soft + 0.5 * SYNOVIUM)
            if index == 0:
                stats["cortex_mm3"] = float((cortex * keep).sum()) * h**3
                if want_truth:
                    inside = (depth > 0) & ~self._in_cavity(bone, z, X, Y)
                    truth[:, sy, sx] = inside
                    inner[:, sy, sx] = inside & (depth > t_local + 2 * self.anat.psf_sigma_mm + h)
        return out, truth, inner, stats

    def _texture(self, tile, key, iz, sy, sx):
        """A texture tile over the window (sy, sx): fixed to the hand, so a repeat scan in another pose
        sees the same trabeculae (sampled where each voxel's hand position lay in the unposed scan)."""
        y0, _, x0, _ = self.grid.box
        if self.grid.pose_rotation == 0.0 and self.grid.pose_shift_mm == (0.0, 0.0):
            return self.tex.sample(tile, key, iz, np.arange(sy.start, sy.stop) + y0, np.arange(sx.start, sx.stop) + x0)
        fy, fx = phantom_pose.unposed_indices(self.Xh[sy, sx], self.Yh[sy, sx], self.anat.hand_centre,
                                              self.anat.rotation - self.grid.pose_rotation, self.h, y0, x0)
        return self.tex.sample_at(tile, key, iz, fy, fx)

    @staticmethod
    def _in_cavity(bone, z, X, Y):
        mask = np.zeros((z.shape[0],) + X.shape, dtype=bool)
        for erosion in bone.erosions:
            mask |= erosion.depth(z, X, Y) > 0
        return mask


def _mc2_design_sums(spec, anatomy, grid, trab_probe):
    """Sums over MC2's truth of the noise-free design, split into parts independent of and
    proportional to the trabecular bone fraction (used to hit the D100 target)."""
    h = grid.spacing
    mc2 = anatomy.bones[0]
    z = (np.arange(grid.n_slices, dtype=np.float32) * h)[:, None, None]
    c, s = math.cos(anatomy.rotation), math.sin(anatomy.rotation)
    cxh, cyh = anatomy.hand_centre
    zs = z[:, 0, 0]
    xc, yc = mc2.centre(zs)
    r = mc2.max_radius() + 1.0
    xs_c = cxh + c * (xc - cxh) - s * (yc - cyh)
    ys_c = cyh + s * (xc - cxh) + c * (yc - cyh)
    step = 2 if h < 0.15 else 1
    ys = np.arange(ys_c.min() - r, ys_c.max() + r, h * step, dtype=np.float32)
    xs = np.arange(xs_c.min() - r, xs_c.max() + r, h * step, dtype=np.float32)
    Ys, Xs = np.meshgrid(ys, xs, indexing="ij")
    X = (cxh + c * (Xs - cxh) + s * (Ys - cyh)).astype(np.float32)
    Y = (cyh - s * (Xs - cxh) + c * (Ys - cyh)).astype(np.float32)
    z = z[::step]
    base = trabecular = count = surface = 0.0
    for k in range(0, z.shape[0], 32):
        zz = z[k:k + 32]
        depth, sv = mc2.depth(zz, X, Y)
        cavity = np.zeros(depth.shape, dtype=bool)
        for erosion in mc2.erosions:
            cavity |= erosion.depth(zz, X, Y) > 0
        inside = (depth > 0) & ~cavity
        t = mc2.cortex(sv)
        interior = _soft(depth - t, h)
        cortex = _soft(depth, h) - interior
        sub = np.exp(-np.maximum(depth - t, 0.0) / 0.8)
        base += float((cortex * mc2.cortical_density + interior * anatomy.marrow)[inside].sum())
        trabecular += float((interior * (anatomy.tissue_density - anatomy.marrow) * np.minimum(1.0 + 0.8 * sub, 1.0 / max(trab_probe, 1e-3)))[inside].sum())
        count += float(inside.sum())
        surface += float((inside & (depth < h)).sum())
    if count == 0:
        return None
    area_ratio = surface / count / h  # surface / volume, 1/mm
    return base / count, trabecular / count, area_ratio


# ---------------------------------------------------------------------------------------------
# Motion
# ---------------------------------------------------------------------------------------------
_MOTION = {  # per grade: ghost weight, ghost shift (mm), slice blur (mm), streak views, streak gain
    0: (0.0, 0.0, 0.0, 0, 0.0),
    1: (0.10, 0.12, 0.04, 2, 0.06),
    2: (0.18, 0.25, 0.08, 4, 0.10),
    3: (0.28, 0.40, 0.13, 7, 0.16),
}


class _Motion:
    """HR-pQCT motion: the object moves during part of the rotation, so some projections disagree.

    Each disagreement is filtered and back-projected like the scanner does, which draws streaks
    tangent to the cortex along the views' direction; a shifted copy weighted in (ghost, doubled
    edges) and in-plane blur in some slices complete the picture. Severity varies along z.
    """

    def __init__(self, grade, rng, grid: _Grid):
        self.grade = grade
        self.grid = grid
        self.h = grid.spacing
        ghost, shift, blur, n_views, gain = _MOTION[grade]
        self.ghost = ghost
        angle = rng.uniform(0, 2 * math.pi)
        self.ghost_shift = (shift * math.sin(angle), shift * math.cos(angle))
        self.blur = blur
        self.blur_axis = int(rng.integers(1, 3))
        periods = rng.uniform(4.0, 20.0, size=3)
        phases = rng.uniform(0, 2 * math.pi, size=3)
        self.weight_params = (periods, phases)
        y0, y1, x0, x1 = grid.box
        ny, nx = y1 - y0, x1 - x0
        self.views = []
        if n_views:
            yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
            n_t = int(math.ceil(math.hypot(ny, nx))) + 4
            base_angle = rng.uniform(0, math.pi)
            for _ in range(n_views):
                phi = base_angle + rng.normal(0, 0.5)
                t = (xx - nx / 2) * math.cos(phi) + (yy - ny / 2) * math.sin(phi) + n_t / 2
                ti = np.clip(np.rint(t).astype(np.int64), 0, n_t - 1).ravel()
                binning = sparse.csr_matrix((np.ones(ti.size, np.float32), (np.arange(ti.size), ti)), shape=(ti.size, n_t))
                delta = rng.normal(0, shift) if shift else 0.0
                nu = np.fft.rfftfreq(n_t, self.h)
                window = 0.5 * (1 + np.cos(np.pi * nu / nu.max()))
                response = np.abs(nu) * (np.exp(-2j * np.pi * nu * delta) - 1.0) * window
                self.views.append((binning, response, gain * rng.uniform(0.6, 1.4), n_t))
        # fade streaks out at the rendered box's border so they do not stop at a hard edge
        fade_y = _smoothstep(np.minimum(np.arange(ny), np.arange(ny)[::-1]) * self.h / 5.0)
        fade_x = _smoothstep(np.minimum(np.arange(nx), np.arange(nx)[::-1]) * self.h / 5.0)
        self.fade = (fade_y[:, None] * fade_x[None, :]).astype(np.float32)

    def weight(self, k0, k1):
        z = np.arange(k0, k1) * self.h
        periods, phases = self.weight_params
        w = sum(np.sin(2 * np.pi * z / p + ph) for p, ph in zip(periods, phases)) / 3.0
        return (0.55 + 0.45 * w).astype(np.float32)

    def apply(self, slab, k0):
        if self.grade == 0:
            return slab
        nz = slab.shape[0]
        w = self.weight(k0, k0 + nz)[:, None, None]
        # ghost: a faint copy of the object where it was for part of the scan
        dy, dx = (int(round(v / self.h)) for v in self.ghost_shift)
        if dy or dx:
            shifted = ndimage.shift(slab, (0, dy, dx), order=0, mode="nearest")
            slab = slab + self.ghost * w * (shifted - slab)
        # streaks: back-projected inconsistency of a few views
        flat = slab.reshape(nz, -1)
        streaks = np.zeros_like(flat)
        for binning, response, gain, n_t in self.views:
            projections = (binning.T @ flat.T).T * self.h  # (nz, n_t), mg HA/cm3 * mm
            error = np.fft.irfft(np.fft.rfft(projections, axis=1) * response, n=n_t, axis=1)
            streaks += (binning @ (gain * error.T.astype(np.float32))).T
        slab = slab + w * streaks.reshape(slab.shape) * self.fade
        # blur along the motion in the worst slices
        if self.blur > 0:
            worst = w[:, 0, 0] > 0.75
            if worst.any():
                slab[worst] = ndimage.gaussian_filter1d(slab[worst], self.blur / self.h, axis=self.blur_axis)
        return slab


# ---------------------------------------------------------------------------------------------
# Noise
# ---------------------------------------------------------------------------------------------
#: Noise correlation of reconstructed XtremeCT scans, measured in the air around a real XtremeCT
#: scan (../shared/data/scanco/aluminum.aim): autocorrelation at lags 1, 2, 3 voxels of 0.71, 0.30,
#: 0.13 in-plane and 0.48, 0.20, 0.11 along z. White noise filtered with these kernels has them.
NOISE_KERNEL_XY = np.array([0.0615, 0.0736, 0.4937, 1.0, 0.4937, 0.0736, 0.0615], dtype=np.float32)
NOISE_KERNEL_Z = np.array([0.0437, 0.0688, 0.2502, 1.0, 0.2502, 0.0688, 0.0437], dtype=np.float32)


class _NoiseField:
    """Correlated Gaussian noise, slice by slice: each slice's white noise comes from its own seed,
    so a slab's noise does not depend on how the volume is cut into slabs (and correlates across)."""

    def __init__(self, seed: int, shape_yx: tuple, sd: float):
        self.seed = seed
        self.shape_yx = tuple(shape_yx)
        self.half = len(NOISE_KERNEL_Z) // 2
        gain = float(np.sum(NOISE_KERNEL_Z**2) * np.sum(NOISE_KERNEL_XY**2) ** 2)
        self.scale = np.float32(sd / math.sqrt(gain))
        self.white = {}

    def _white(self, k):
        if k not in self.white:
            rng = np.random.default_rng(np.random.SeedSequence([0x5BD, self.seed, 98, k + (1 << 20)]))
            self.white[k] = rng.standard_normal(self.shape_yx, dtype=np.float32)
        return self.white[k]

    def slab(self, k0, k1):
        # along z: each white slice is made once and added, weighted, to the slices it reaches
        out = np.zeros((k1 - k0,) + self.shape_yx, dtype=np.float32)
        for k in range(k0 - self.half, k1 + self.half):
            white = self._white(k)
            for i in range(max(k - self.half, k0), min(k + self.half + 1, k1)):
                out[i - k0] += NOISE_KERNEL_Z[k - i + self.half] * white
            if k < k1 - self.half:
                del self.white[k]  # the next slab starts at k1 and reaches back only to k1 - half
        smooth = ndimage.correlate1d(out, NOISE_KERNEL_XY, axis=1, mode="mirror")
        ndimage.correlate1d(smooth, NOISE_KERNEL_XY, axis=2, output=out, mode="mirror")
        out *= self.scale
        return out


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------
def _streams(seed):
    names = ("anatomy", "density", "scanner", "erosion", "texture", "motion", "layout", "noise", "hand", "broad")
    return {name: np.random.default_rng(np.random.SeedSequence([0x5BD, seed, i])) for i, name in enumerate(names)}


def _layout(spec: PhantomSpec, anatomy: _Anatomy, rng) -> _Grid:
    h = spec.spacing_mm
    full_n = int(round(FULL_FOV_MM / h))
    cxh, cyh = anatomy.hand_centre
    c, s = math.cos(anatomy.rotation), math.sin(anatomy.rotation)

    def to_scanner(x, y):
        return cxh + c * (x - cxh) - s * (y - cyh), cyh + s * (x - cxh) + c * (y - cyh)

    mc2, mc3 = anatomy.bones[0], anatomy.bones[1]
    if spec.fov == "cropped":
        x2, y2 = to_scanner(mc2.cx, mc2.cy)
        ny = int(round(CROPPED_FOV_MM[0] / h))
        nx = int(round(CROPPED_FOV_MM[1] / h))
        x_start = x2 - mc2.a_head - rng.uniform(3.0, 5.0)
        y_start = y2 - CROPPED_FOV_MM[0] / 2 + rng.uniform(-2.0, 2.0)
        x0 = int(np.clip(round(x_start / h), 0, full_n - nx))
        y0 = int(np.clip(round(y_start / h), 0, full_n - ny))
        box = (y0, y0 + ny, x0, x0 + nx)
        return _Grid(h, spec.n_slices, full_n, box, (y0, x0), (spec.n_slices, ny, nx))
    from .phantom_hand import hand_bounds

    # the hand's envelope and the thumb's lobe (which moves radially towards slice 0), rotated, + 6 mm
    bx0, bx1, by0, by1 = hand_bounds(anatomy)
    corners = [to_scanner(x, y) for x in (bx0, bx1) for y in (by0, by1)]
    y0 = max(int(math.floor((min(y for _, y in corners) - 6.0) / h)), 0)
    y1 = min(int(math.ceil((max(y for _, y in corners) + 6.0) / h)), full_n)
    x0 = max(int(math.floor((min(x for x, _ in corners) - 6.0) / h)), 0)
    x1 = min(int(math.ceil((max(x for x, _ in corners) + 6.0) / h)), full_n)
    return _Grid(h, spec.n_slices, full_n, (y0, y1, x0, x1), (0, 0), (spec.n_slices, full_n, full_n))


def generate_phantom(spec: PhantomSpec | None = None, progress: Progress | None = None,
                     cancel: Callable[[], bool] | None = None) -> Phantom:
    """Make one phantom. Deterministic: the same spec gives the same voxels."""
    spec = (spec or PhantomSpec()).validated()
    started = time.perf_counter()
    rngs = _streams(spec.seed)
    anatomy = _draw_anatomy(spec, rngs["anatomy"], rngs["density"], rngs["scanner"], rngs["erosion"], rngs["hand"],
                            rngs["broad"])
    grid = _layout(spec, anatomy, rngs["layout"])
    pose = phantom_pose.pose_of(spec.seed, spec.pose_seed)
    if pose is not None:  # the field stays where the unposed scan had it; the hand moves within it
        delta = math.radians(pose["rotation_deg"])
        anatomy = dataclasses.replace(anatomy, rotation=anatomy.rotation + delta)
        grid = dataclasses.replace(grid, pose_rotation=delta, pose_shift_mm=pose["shift_mm_yx"])
    calibration = SCANNER_CALIBRATIONS[spec.scanner]
    h = spec.spacing_mm

    # trabecular bone fraction that gives the D100 target (blur moves cortex out of the mask)
    probe = 0.2
    sums = _mc2_design_sums(spec, anatomy, grid, probe)
    if sums is None:
        raise VbmdError("phantom: MC2 is not in the volume; use more slices")
    base, per_fraction, surface_ratio = sums
    leak = (anatomy.bones[0].cortical_density - MUSCLE) * anatomy.psf_sigma_mm / math.sqrt(2 * math.pi) * surface_ratio
    trab_fraction = float(np.clip((anatomy.d100_target + leak - base) / max(per_fraction, 1e-6), 0.02, 0.6))

    textures = _Textures(rngs["texture"], h, anatomy.trabecular_wavelength, anatomy.texture_bandwidth,
                         anatomy.texture_z_stretch, anatomy.texture_kind)
    renderer = _Renderer(spec, anatomy, textures, grid, trab_fraction)
    motion = _Motion(spec.motion_grade, rngs["motion"] if pose is None else phantom_pose.motion_rng(spec.seed, spec.pose_seed),
                     grid)

    nz, ny_out, nx_out = grid.out_shape
    image = np.empty(grid.out_shape, dtype=np.int16)
    truth = np.zeros(grid.out_shape, dtype=np.uint8)
    by0, by1, bx0, bx1 = grid.box
    oy, ox = grid.out_origin_yx
    ry, rx = slice(by0 - oy, by1 - oy), slice(bx0 - ox, bx1 - ox)
    sigma_vox = anatomy.psf_sigma_mm / h
    halo = int(math.ceil(3 * sigma_vox)) + 1
    noise_sd = anatomy.noise_mg * float(np.clip((NATIVE_SPACING_MM / h) ** 1.5, 0.2, 1.0))
    per_native = calibration.density_per_native
    air = calibration.density_intercept
    inner_slabs = []
    n_slabs = (nz + _SLAB - 1) // _SLAB
    rendered = None
    noise = _NoiseField(spec.seed if pose is None else pose["noise_seed"], (ny_out, nx_out), noise_sd)
    for slab_index in range(n_slabs):
        if cancel is not None and cancel():
            raise CancelledError()
        k0, k1 = slab_index * _SLAB, min((slab_index + 1) * _SLAB, nz)
        if rendered is None:
            design, truth_slab, inner_slab, _ = renderer.design(k0 - halo, k1 + halo, want_truth=True)
        else:
            # the blur's halo overlaps the previous slab: reuse those slices (each slice's design
            # depends on its own z only), render the rest
            start, previous = rendered
            reused = [part[k0 - halo - start:] for part in previous]
            fresh = renderer.design(start + previous[0].shape[0], k1 + halo, want_truth=True)[:3]
            design, truth_slab, inner_slab = (np.concatenate([old, new]) for old, new in zip(reused, fresh))
        rendered = (k0 - halo, (design, truth_slab, inner_slab))
        blurred = ndimage.gaussian_filter(design, sigma_vox, mode="nearest", truncate=3.0)[halo:halo + k1 - k0]
        truth_slab = truth_slab[halo:halo + k1 - k0]
        inner_slab = inner_slab[halo:halo + k1 - k0]
        blurred = motion.apply(blurred, k0)
        if spec.fov == "full":
            full = noise.slab(k0, k1)
            full += np.float32(air)
            full[:, ry, rx] += blurred - np.float32(air)
        else:
            full = noise.slab(k0, k1)
            full += blurred
        native = full  # in place: a full-field slab is 150 MB per copy
        native -= np.float32(air)
        native /= np.float32(per_native)
        np.rint(native, out=native)
        np.clip(native, -32768, 32767, out=native)
        image[k0:k1] = native
        truth[k0:k1, ry, rx] = truth_slab
        inner_slabs.append((k0, k1, inner_slab))
        if progress is not None:
            progress(slab_index + 1, n_slabs, f"rendering slices {k0}-{k1 - 1}")

    # cortical volume of MC2 (design, full resolution, within the volume)
    mc2_cortex = _mc2_cortex_volume(renderer, grid)

    # hit the D100 target: a constant offset deep in MC2's marrow space (typically within +-10 mg
    # HA/cm3; at most 40, so a volume too short to hold the target, e.g. only the cortical tip of
    # the head, keeps realistic marrow and misses the target; the truth is what the image holds)
    inside = truth.view(bool)  # 0/1 uint8: a view, not a copy of a possibly 1536 x 1536 x N mask
    if not inside.any():
        raise VbmdError("phantom: MC2 is not in the volume; use more slices")
    d100 = _d100(image, inside, calibration)
    n_inner = sum(int(m.sum()) for _, _, m in inner_slabs)
    offset_mg = (anatomy.d100_target - d100) * inside.sum() / n_inner if n_inner else 0.0
    offset_native = int(round(float(np.clip(offset_mg, -40.0, 40.0)) / per_native))
    if offset_native:
        for k0, k1, inner_slab in inner_slabs:
            view = image[k0:k1, ry, rx]
            view[inner_slab] = np.clip(view[inner_slab].astype(np.int32) + offset_native, -32768, 32767).astype(np.int16)

    if spec.hand == "left":
        for k0 in range(0, nz, _SLAB):
            image[k0:k0 + _SLAB] = image[k0:k0 + _SLAB, :, ::-1].copy()
            truth[k0:k0 + _SLAB] = truth[k0:k0 + _SLAB, :, ::-1].copy()
        position_x = grid.full_n - ox - nx_out
    else:
        position_x = ox
    position_xyz = (int(position_x), int(oy), 0)
    origin = (position_xyz[2] * h, position_xyz[1] * h, position_xyz[0] * h)
    header_hand = spec.hand if spec.hand_in_header else None
    header = {
        "format": "phantom",
        "generator": f"{GENERATOR_NAME} {GENERATOR_VERSION}",
        "position": position_xyz,
        "processing_log": _processing_log(spec, calibration),
        "phantom_spec": {**spec.to_dict(), "hand": header_hand},
    }
    image_scan = Scan(data=image, spacing=(h, h, h), origin=origin, calibration=calibration, unit=UNIT_NATIVE,
                      kind="image", hand=header_hand, header=header)
    truth_scan = Scan(data=truth, spacing=(h, h, h), origin=origin, calibration=None, unit="unknown", kind="mask",
                      hand=header_hand, header=dict(header))
    info = _truth_info(spec, anatomy, grid, image_scan, truth, trab_fraction, mc2_cortex, noise_sd, position_xyz,
                       time.perf_counter() - started, offset_native * per_native)
    if pose is not None:
        info["design"]["pose"] = pose
    if spec.variation == "broad":
        from .phantom_broad import design_info

        info["design"]["broad"] = design_info(anatomy)
    return Phantom(image=image_scan, truth=truth_scan, truth_info=info, spec=spec)


def _mc2_cortex_volume(renderer: _Renderer, grid: _Grid) -> float:
    total = 0.0
    for k0 in range(0, grid.n_slices, 32):
        k1 = min(k0 + 32, grid.n_slices)
        mc2 = renderer.anat.bones[0]
        window = renderer._bone_window(mc2, k0 * grid.spacing, k1 * grid.spacing)
        if window is None:
            continue
        sy, sx = window
        z = (np.arange(k0, k1, dtype=np.float32) * grid.spacing)[:, None, None]
        X, Y = renderer.Xh[sy, sx], renderer.Yh[sy, sx]
        depth, s = mc2.depth(z, X, Y)
        cortex = (depth > 0) & (depth <= mc2.cortex(s)) & ~renderer._in_cavity(mc2, z, X, Y)
        total += float(cortex.sum()) * grid.spacing**3
    return total


def _d100(image: np.ndarray, inside: np.ndarray, calibration: Calibration) -> float:
    values = image[inside].astype(np.float64) * (calibration.density_slope / calibration.mu_scaling) + calibration.density_intercept
    return float(values.mean())


def _processing_log(spec: PhantomSpec, calibration: Calibration) -> str:
    lines = [
        "! Processing Log",
        "!",
        "!-------------------------------------------------------------------------------",
        f"{'Created by':<30}{'napari-vbmd phantom generator':<50}",
        f"{'Patient Name':<30}{'PHANTOM_' + str(spec.seed):<50}",
        f"{'Scanner type':<30}{SCANNER_NAMES[spec.scanner] + ' (synthetic)':<50}",
        f"{'Energy [V]':<30}{59400:>21}",
        f"{'Intensity [uA]':<30}{900:>21}",
        f"{'Mu_Scaling':<30}{int(calibration.mu_scaling):>21}",
        f"{'Calibration Data':<30}{'60kVp, BH: 200 mg HA/ccm, Scaling 8192':<50}",
        f"{'Calib. default unit type':<30}{'2 (Density)':<50}",
        f"{'Density: unit':<30}{'mg HA/ccm':<50}",
        f"{'Density: slope':<30}{calibration.density_slope:>21.5f}",
        f"{'Density: intercept':<30}{calibration.density_intercept:>21.6f}",
        f"{'HU: mu water':<30}{calibration.mu_water:>21.4f}",
        "!-------------------------------------------------------------------------------",
    ]
    return "\n".join(lines) + "\n"


def _thumb_info(anatomy) -> dict | None:
    from .phantom_hand import thumb_info

    return thumb_info(anatomy)


def _truth_info(spec, anatomy, grid, image: Scan, truth, trab_fraction, cortex_mm3, noise_sd, position_xyz,
                seconds, offset_mg) -> dict:
    calibration = image.calibration
    inside = truth.view(bool)  # 0/1 uint8: a view, not a copy of a possibly 1536 x 1536 x N mask
    values = image.data[inside].astype(np.float64) * (calibration.density_slope / calibration.mu_scaling) + calibration.density_intercept
    n = int(values.size)
    h = spec.spacing_mm
    per_slice = inside.sum(axis=(1, 2))
    n_slices = int((per_slice > 0).sum())
    mc2 = anatomy.bones[0]
    return {
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "spec": spec.to_dict(),
        **{k: v for k, v in spec.to_dict().items() if k != "d100_target"},
        "d100_target_mg_ha_cm3": anatomy.d100_target,
        "d100_mg_ha_cm3": float(values.mean()),
        "sd_mg_ha_cm3": float(values.std(ddof=1)) if n > 1 else 0.0,
        "n_voxels": n,
        "volume_mm3": n * h**3,
        "n_slices_with_bone": n_slices,
        "mean_slice_area_mm2": n * h * h / max(n_slices, 1),
        "first_slice": int(np.flatnonzero(per_slice)[0]) if n else None,
        "last_slice": int(np.flatnonzero(per_slice)[-1]) if n else None,
        "shape": list(image.shape),
        "spacing_mm": list(image.spacing),
        "origin_mm": list(image.origin),
        "aim_position_xyz": list(position_xyz),
        "calibration": calibration.to_dict(),
        "scanner_name": SCANNER_NAMES[spec.scanner],
        "layout": "z distal (slice 0: phalanx base) to proximal; y dorsal to palmar; "
                  "x radial to ulnar for a right hand, mirrored for a left hand",
        "design": {
            "cortical_density_mg_ha_cm3": mc2.cortical_density,
            "trabecular_tissue_density_mg_ha_cm3": anatomy.tissue_density,
            "trabecular_bone_fraction": trab_fraction,
            "trabecular_density_mg_ha_cm3": anatomy.marrow + trab_fraction * (anatomy.tissue_density - anatomy.marrow),
            "marrow_density_mg_ha_cm3": anatomy.marrow,
            "trabecular_wavelength_mm": anatomy.trabecular_wavelength,
            "cortex_thickness_head_mm": mc2.cortex_head,
            "cortex_thickness_shaft_mm": mc2.cortex_shaft,
            "cortical_volume_mm3": cortex_mm3,
            "head_width_mm": 2 * mc2.a_head,
            "head_depth_mm": 2 * mc2.b_head,
            "shaft_width_mm": 2 * mc2.a_shaft,
            "mc2_tip_z_mm": mc2.z_tip,
            "soft_tissue_mg_ha_cm3": {"fat": FAT, "muscle": MUSCLE, "skin": SKIN, "tendon": TENDON},
            "psf_sigma_mm": anatomy.psf_sigma_mm,
            "noise_sd_mg_ha_cm3": noise_sd,
            "marrow_offset_to_hit_target_mg_ha_cm3": offset_mg,
            "erosions": [{"centre_xyz_mm": [float(v) for v in e.centre], "radii_mm": [float(v) for v in e.radii]}
                         for e in mc2.erosions],
            "thumb": _thumb_info(anatomy),
        },
        "truth_convention": "MC2 periosteal envelope, solid; erosion cavities (open to the outside) excluded",
        "generation_seconds": seconds,
    }


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
def phantom_paths(out_dir: str | Path, name: str) -> dict[str, Path]:
    out_dir = Path(out_dir)
    return {"image": out_dir / f"{name}.aim", "mask": out_dir / f"{name}_mask.aim", "truth": out_dir / f"{name}_truth.json"}


def phantom_is_cached(out_dir: str | Path, name: str, spec: PhantomSpec) -> bool:
    """Whether ``<name>`` in ``out_dir`` was written from ``spec`` by a generator version that makes
    the same voxels (so a cache of phantoms from an older generator is made again, not silently
    reused; cropped fields are the same since :data:`CROPPED_UNCHANGED_SINCE`)."""
    import json

    paths = phantom_paths(out_dir, name)
    if not all(p.is_file() for p in paths.values()):
        return False
    try:
        info = json.loads(paths["truth"].read_text())
    except (OSError, ValueError):
        return False
    spec = spec.validated()
    version = info.get("generator_version")
    same_voxels = version == GENERATOR_VERSION or (
        spec.fov == "cropped" and isinstance(version, int) and CROPPED_UNCHANGED_SINCE <= version <= GENERATOR_VERSION)
    if spec.variation == "broad":
        from .phantom_broad import BROAD_VERSION

        same_voxels = version == GENERATOR_VERSION and (info.get("design") or {}).get("broad", {}).get(
            "broad_version") == BROAD_VERSION
    return same_voxels and info.get("spec") == spec.to_dict()


def write_phantom(phantom: Phantom, out_dir: str | Path, name: str, overwrite: bool = False) -> dict[str, Path]:
    """Write ``<name>.aim`` (image), ``<name>_mask.aim`` (truth, char 127) and ``<name>_truth.json``."""
    from . import io
    from ._atomic import write_text_atomic

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VbmdError(f"cannot create output folder ({exc.strerror})", out_dir) from None
    paths = phantom_paths(out_dir, name)
    if not overwrite:
        for path in paths.values():
            if path.exists():
                raise VbmdError("already exists; refusing to overwrite (use --overwrite)", path)
    io.write_image(paths["image"], phantom.image)
    io.write_mask(paths["mask"], phantom.truth, parent=phantom.image)
    info = dict(phantom.truth_info, files={k: p.name for k, p in paths.items()})
    write_text_atomic(paths["truth"], json.dumps(info, indent=2) + "\n")
    return paths


def case_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` of a cohort with seed ``seed`` (stable across versions and runs)."""
    return int(np.random.SeedSequence([0xC0407, int(seed), int(index)]).generate_state(1)[0])


def cohort_specs(n: int, seed: int = 0, **overrides) -> list[PhantomSpec]:
    """Specs of a varied cohort: hands, motion grades, erosions drawn like the study (~1/4 left)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise VbmdError(f"phantom: number of phantoms must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise VbmdError(f"phantom: seed must be a non-negative integer, got {seed!r}")
    specs = []
    for k in range(n):
        rng = np.random.default_rng(case_seed(seed, k))
        values = {
            "seed": case_seed(seed, k),
            "hand": "left" if rng.random() < 0.25 else "right",
            "motion_grade": int(rng.choice([0, 1, 2, 3], p=[0.2, 0.35, 0.2, 0.25])),
            "erosions": int(rng.choice([0, 0, 0, 1, 2, 3])),
        }
        values.update({k2: v for k2, v in overrides.items() if v is not None})
        specs.append(PhantomSpec(**values).validated())
    return specs


COHORT_COLUMNS = ["name", "image", "mask", "truth", "d100_mg_ha_cm3", "mean_slice_area_mm2", "seed", "hand", "fov",
                  "n_slices", "spacing_mm", "motion_grade", "erosions", "d100_target", "scanner", "hand_in_header"]


def cohort_cases(n: int, seed: int = 0, **spec_overrides) -> list[tuple[str, PhantomSpec]]:
    """Names and specs of a cohort. ``hand`` may also be "random" (drawn, ~1/4 left, the default)
    or "both" (every case as a right hand and as its mirror image, ``<name>_right``/``<name>_left``)."""
    hand = spec_overrides.pop("hand", None)
    if hand not in (None, "random", "both", "left", "right"):
        raise VbmdError(f"phantom: hand must be left, right, both or random, got {hand!r}")
    fixed = hand if hand in ("left", "right") else None
    specs = cohort_specs(n, seed, hand=fixed, **spec_overrides)
    cases = []
    for k, spec in enumerate(specs):
        name = f"phantom_{seed}_{k:03d}"
        if hand == "both":
            cases += [(f"{name}_{side}", dataclasses.replace(spec, hand=side)) for side in ("right", "left")]
        else:
            cases.append((name, spec))
    return cases


def generate_cohort(out_dir: str | Path, n: int, seed: int = 0, overwrite: bool = False,
                    progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
                    **spec_overrides) -> list[dict]:
    """Write ``n`` phantoms and ``cohort.csv``; returns one row per case (name, files, D100, spec).

    ``progress(k, total, message)`` is called before each case (k cases done) and after it (k + 1).
    Nothing is written when any output already exists (unless ``overwrite``)."""
    from ._atomic import write_text_atomic

    cases = cohort_cases(n, seed, **spec_overrides)
    out_dir = Path(out_dir)
    index_path = out_dir / "cohort.csv"
    if not overwrite:
        for name, _ in cases:
            for path in phantom_paths(out_dir, name).values():
                if path.exists():
                    raise VbmdError("already exists; refusing to overwrite (use --overwrite)", path)
        if index_path.exists():
            raise VbmdError("already exists; refusing to overwrite (use --overwrite)", index_path)
    rows = []
    total = len(cases)
    for k, (name, spec) in enumerate(cases):
        if cancel is not None and cancel():
            raise CancelledError()
        if progress is not None:
            progress(k, total, f"generating {name} ({spec.hand} hand, {spec.fov} field, {spec.n_slices} slices)")
        phantom = generate_phantom(spec, cancel=cancel)
        paths = write_phantom(phantom, out_dir, name, overwrite=overwrite)
        info = phantom.truth_info
        rows.append({
            "name": name,
            "image": str(paths["image"]),
            "mask": str(paths["mask"]),
            "truth": str(paths["truth"]),
            "d100_mg_ha_cm3": info["d100_mg_ha_cm3"],
            "mean_slice_area_mm2": info["mean_slice_area_mm2"],
            **{key: value for key, value in spec.to_dict().items()},
            "hand_in_header": spec.hand_in_header,
        })
        if progress is not None:
            progress(k + 1, total, f"wrote {name}")
    import io as _io

    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COHORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: (Path(row[c]).name if c in ("image", "mask", "truth") else row[c]) for c in COHORT_COLUMNS})
    write_text_atomic(index_path, buffer.getvalue())
    return rows
