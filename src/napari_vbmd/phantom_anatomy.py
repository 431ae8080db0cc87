"""The phantom's anatomy: metacarpals, proximal phalanges and erosions as analytic signed distances
in hand coordinates (mm), and the per-seed draw of a hand (``_draw_anatomy``). See phantom.py.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from .phantom_spec import FULL_FOV_MM, SCANNER_NOISE_MG, PhantomSpec

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
