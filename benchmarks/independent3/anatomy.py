"""Anatomy of the third family: bones as stacks of per-slice closed contours.

Hand frame (right hand), millimetres: x runs radial -> ulnar, y dorsal -> palmar, z distal ->
proximal with z = 0 at MC2's distal tip. A bone is not a surface in 3-D: it is, at every height z,
a closed polygon whose shape comes from a polar Fourier series (harmonics 2-4) plus two palmar
condyle lobes, scaled by a dome / neck / shaft profile; every coefficient is a smooth function of
the distance t = z - tip behind the bone's tip. Voxels are inside a bone when their centre is inside
that slice's polygon (matplotlib's point-in-polygon test). The proximal phalanx base is a stack of
rounded outer contours from which the metacarpal head, dilated by the joint space in 3-D (a
Euclidean distance transform), is removed: a cup around the head.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from matplotlib.path import Path as MplPath

N_THETA = 180
THETA = np.linspace(0, 2 * np.pi, N_THETA, endpoint=False)


def smoothstep(u):
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3 - 2 * u)


@dataclass
class Metacarpal:
    name: str
    x0: float  # axis centre at the tip's height
    y0: float
    tip_z: float
    fan_x: float  # axis slope (mm per mm along z)
    fan_y: float
    rx: float  # head half-widths (radial-ulnar, dorsal-palmar)
    ry: float
    dome_hx: float  # dome heights: the head reaches full width this far behind its tip
    dome_hy: float
    dome_p: float  # super-elliptic dome exponent (2: elliptic; larger: flatter top)
    tip_dx: float  # where the dome's apex sits relative to the axis
    tip_dy: float
    neck_start: float
    neck_len: float
    neck_rx: float  # neck/shaft half-width as a fraction of the head's
    neck_ry: float
    harm_head: tuple  # (a2, b2, a3, b3, a4, b4)
    harm_shaft: tuple
    condyle_amp: float
    condyle_sep_deg: float
    condyle_t0: float
    condyle_t1: float
    cortex_head_mm: float
    cortex_shaft_mm: float
    rho_cortex: float
    rho_plate: float
    rho_trab: float
    rho_marrow: float
    bvtv_head: float
    bvtv_shaft: float
    trab_wavelength_mm: float
    trab_bandwidth: float
    trab_elongation: float
    trab_plate_fraction: float

    def centre(self, z):
        return self.x0 + self.fan_x * (z - self.tip_z), self.y0 + self.fan_y * (z - self.tip_z)

    def max_radius(self) -> float:
        return max(self.rx, self.ry) * (1.0 + self.condyle_amp + 0.12) + abs(self.tip_dx) + abs(self.tip_dy)

    def contour(self, z: float):
        """(x, y) polygon of the bone's outer surface at height z, or None distal of its tip."""
        t = z - self.tip_z
        if t <= 0:
            return None
        dome = lambda h: (1 - (1 - min(t / h, 1.0)) ** self.dome_p) ** (1 / self.dome_p)  # noqa: E731
        sx, sy = dome(self.dome_hx), dome(self.dome_hy)
        neck = smoothstep((t - self.neck_start) / self.neck_len)
        rx = self.rx * sx * (1 - (1 - self.neck_rx) * neck)
        ry = self.ry * sy * (1 - (1 - self.neck_ry) * neck)
        w = 1 - neck
        a2, b2, a3, b3, a4, b4 = (w * h + (1 - w) * s for h, s in zip(self.harm_head, self.harm_shaft))
        th = THETA
        r = 1 + a2 * np.cos(2 * th) + b2 * np.sin(2 * th) + a3 * np.cos(3 * th) + b3 * np.sin(3 * th) \
            + a4 * np.cos(4 * th) + b4 * np.sin(4 * th)
        u = (t - self.condyle_t0) / max(self.condyle_t1 - self.condyle_t0, 1e-3)
        if 0 < u < 1:
            amp = self.condyle_amp * np.sin(np.pi * u)
            sep = np.deg2rad(self.condyle_sep_deg)
            d = lambda c: np.angle(np.exp(1j * (th - c)))  # noqa: E731
            width = np.deg2rad(24)
            r = r + amp * (np.exp(-0.5 * (d(np.pi / 2 - sep) / width) ** 2) + np.exp(-0.5 * (d(np.pi / 2 + sep) / width) ** 2)) \
                - 0.6 * amp * np.exp(-0.5 * (d(np.pi / 2) / (0.5 * width)) ** 2)
        apex = (1 - min(sx, sy)) ** 2
        cx, cy = self.centre(z)
        return cx + self.tip_dx * apex + rx * r * np.cos(th), cy + self.tip_dy * apex + ry * r * np.sin(th)

    def cortex_mm(self, t):
        """Cortical thickness by distance behind the tip: thin over the head, thick in the shaft."""
        return self.cortex_head_mm + (self.cortex_shaft_mm - self.cortex_head_mm) * smoothstep(
            (t - self.neck_start) / (self.neck_len + 2.0))

    def bvtv(self, t):
        return self.bvtv_head + (self.bvtv_shaft - self.bvtv_head) * smoothstep((t - self.neck_start) / (self.neck_len + 1.5))

    def to_dict(self):
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass
class Phalanx:
    """Base of a proximal phalanx: rounded outer contours, cupped around its metacarpal's head."""

    name: str
    of: str  # the metacarpal it articulates with
    dx: float
    dy: float
    rx: float
    ry: float
    gap_mm: float  # joint space: the cup keeps this far from the head's surface
    rim_mm: float  # how far proximal of the metacarpal's tip the rim reaches
    harm: tuple  # (a2, b2, a3, b3)
    cortex_mm: float
    rho_cortex: float
    rho_trab: float
    rho_marrow: float
    bvtv: float
    trab_wavelength_mm: float

    def contour(self, z: float, mc: Metacarpal):
        z_end = mc.tip_z + self.rim_mm
        z_round = mc.tip_z - self.gap_mm - 1.0
        if z >= z_end:
            return None
        g = 1.0 if z <= z_round else np.sqrt(max(1 - ((z - z_round) / (z_end - z_round)) ** 2, 0.0))
        if g < 0.05:
            return None
        th = THETA
        a2, b2, a3, b3 = self.harm
        r = 1 + a2 * np.cos(2 * th) + b2 * np.sin(2 * th) + a3 * np.cos(3 * th) + b3 * np.sin(3 * th)
        cx, cy = mc.centre(min(z, mc.tip_z))
        return cx + self.dx + self.rx * g * r * np.cos(th), cy + self.dy + self.ry * g * r * np.sin(th)

    def to_dict(self):
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def inside_polygon(xs, ys, grid_x, grid_y):
    """Boolean (ny, nx): pixel centres (grid_y[j], grid_x[i]) inside the closed polygon."""
    out = np.zeros((grid_y.size, grid_x.size), bool)
    if xs is None:
        return out
    i0, i1 = np.searchsorted(grid_x, xs.min()), np.searchsorted(grid_x, xs.max(), side="right")
    j0, j1 = np.searchsorted(grid_y, ys.min()), np.searchsorted(grid_y, ys.max(), side="right")
    if i1 <= i0 or j1 <= j0:
        return out
    yy, xx = np.meshgrid(grid_y[j0:j1], grid_x[i0:i1], indexing="ij")
    path = MplPath(np.column_stack([xs, ys]))
    out[j0:j1, i0:i1] = path.contains_points(np.column_stack([xx.ravel(), yy.ravel()])).reshape(xx.shape)
    return out


def polygon_gap(a, b) -> float:
    """Smallest distance between the vertices of two polygons (inf when one is missing)."""
    if a is None or b is None:
        return np.inf
    pa, pb = np.column_stack(a), np.column_stack(b)
    d = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))
    return float(d.min())


def draw_metacarpal(rng, name: str, scale: float, x0: float, y0: float, tip_z: float) -> Metacarpal:
    u = rng.uniform
    rx = scale * u(6.4, 7.8)
    ry = scale * u(5.9, 7.3)
    neck_start = u(4.6, 6.6)
    hh = u(3.2, 4.8)
    return Metacarpal(
        name=name, x0=x0, y0=y0, tip_z=tip_z, fan_x=u(-0.06, 0.06), fan_y=u(-0.05, 0.05), rx=rx, ry=ry,
        dome_hx=hh * u(0.85, 1.2), dome_hy=hh * u(0.85, 1.2), dome_p=u(1.9, 2.8),
        tip_dx=u(-0.8, 0.8), tip_dy=u(-1.5, 0.6), neck_start=neck_start, neck_len=u(2.5, 4.5),
        neck_rx=u(0.6, 0.74), neck_ry=u(0.66, 0.8),
        harm_head=(u(-0.05, 0.05), u(-0.03, 0.03), u(-0.03, 0.03), u(-0.02, 0.02), u(-0.015, 0.015), u(-0.015, 0.015)),
        harm_shaft=(u(-0.04, 0.06), u(-0.03, 0.03), u(-0.02, 0.02), u(0.02, 0.07), u(-0.02, 0.02), u(-0.02, 0.02)),
        condyle_amp=u(0.04, 0.12), condyle_sep_deg=u(28, 42), condyle_t0=u(0.8, 2.0), condyle_t1=neck_start + u(0.5, 2.5),
        cortex_head_mm=u(0.2, 0.6), cortex_shaft_mm=u(0.6, 2.0),
        rho_cortex=u(950, 1180), rho_plate=u(850, 1100), rho_trab=u(650, 950), rho_marrow=u(-40, 70),
        bvtv_head=u(0.12, 0.30), bvtv_shaft=u(0.03, 0.12), trab_wavelength_mm=u(0.55, 1.3),
        trab_bandwidth=u(0.25, 0.5), trab_elongation=u(1.3, 3.0), trab_plate_fraction=u(0.3, 1.0),
    )


def draw_phalanx(rng, mc: Metacarpal, narrow: bool) -> Phalanx:
    u = rng.uniform
    return Phalanx(
        name="P" + mc.name[2:], of=mc.name, dx=u(-0.6, 0.6), dy=u(-1.2, 0.4), rx=mc.rx * u(0.92, 1.08),
        ry=mc.ry * u(0.8, 0.95), gap_mm=u(0.8, 1.2) if narrow else u(0.8, 2.5), rim_mm=u(0.6, 2.4),
        harm=(u(-0.05, 0.05), u(-0.03, 0.03), u(-0.02, 0.02), u(-0.02, 0.02)), cortex_mm=u(0.25, 0.55),
        rho_cortex=u(850, 1100), rho_trab=u(700, 950), rho_marrow=u(-40, 70), bvtv=u(0.15, 0.32),
        trab_wavelength_mm=u(0.6, 1.3),
    )


@dataclass
class Hand:
    metacarpals: list  # MC2 first, then MC3, MC4, MC5
    phalanges: list
    thumb: dict | None
    soft: dict

    def to_dict(self):
        return {"metacarpals": [m.to_dict() for m in self.metacarpals],
                "phalanges": [p.to_dict() for p in self.phalanges], "thumb": self.thumb, "soft": self.soft}


def _signed_gap(a, b) -> float:
    """Closest approach of two polygons' vertices; negative when one reaches into the other."""
    ha = a[0] >= np.median(a[0])  # the facing halves (b lies on a's +x side)
    hb = b[0] <= np.median(b[0])
    gap = polygon_gap((a[0][ha], a[1][ha]), (b[0][hb], b[1][hb]))
    if np.isfinite(gap) and (MplPath(np.column_stack(a)).contains_points(np.column_stack(b)).any()
                             or MplPath(np.column_stack(b)).contains_points(np.column_stack(a)).any()):
        return -gap
    return gap


def _place_ulnar(mc_prev: Metacarpal, mc: Metacarpal, target_gap: float, z_levels) -> float:
    """Move ``mc`` along x (bisection) until its closest approach to ``mc_prev`` over the sampled
    slices is ``target_gap``; returns the gap reached."""
    x_start = mc.x0
    pairs = [(mc_prev.contour(z), mc.contour(z)) for z in z_levels]
    pairs = [(a, (b[0] - x_start, b[1])) for a, b in pairs if a is not None and b is not None]

    def gap_at(x):
        mc.x0 = x
        return min(_signed_gap(a, (b[0] + x, b[1])) for a, b in pairs)

    lo, hi = mc_prev.x0, mc_prev.x0 + 40.0  # overlapping, far apart
    for _ in range(16):
        mid = 0.5 * (lo + hi)
        if gap_at(mid) < target_gap:
            lo = mid
        else:
            hi = mid
    return gap_at(hi)


def draw_hand(seed: int) -> Hand:
    rng = np.random.default_rng([seed, 3, 1])
    u = rng.uniform
    z_levels = np.arange(0.2, 14.0, 0.6)
    mc2 = draw_metacarpal(rng, "MC2", 1.0, 0.0, 0.0, 0.0)
    mc3 = draw_metacarpal(rng, "MC3", u(1.0, 1.1), 14.0, u(-2.5, -0.5), u(-2.0, 1.5))
    close = rng.random() < 0.35
    mc3_gap = u(0.2, 0.6) if close else u(1.0, 5.0)
    achieved = _place_ulnar(mc2, mc3, mc3_gap, z_levels)
    mc4 = draw_metacarpal(rng, "MC4", u(0.86, 0.95), mc3.x0 + 13.0, u(-1.5, 0.5), mc3.tip_z + u(1.0, 3.0))
    _place_ulnar(mc3, mc4, u(1.5, 5.0), z_levels)
    mc5 = draw_metacarpal(rng, "MC5", u(0.78, 0.9), mc4.x0 + 12.0, u(0.5, 3.0), mc4.tip_z + u(1.0, 3.5))
    _place_ulnar(mc4, mc5, u(1.5, 5.0), z_levels)
    mcs = [mc2, mc3, mc4, mc5]
    narrow = rng.random() < 0.3
    phalanges = [draw_phalanx(rng, m, narrow and m is mc2) for m in mcs]
    thumb = None
    if rng.random() < 0.75:
        thumb = {"x": mc2.x0 - u(15.0, 24.0), "y": u(8.0, 15.0), "r_bone": u(3.8, 5.0), "r_soft": u(4.0, 7.0),
                 "cortex_mm": u(0.8, 1.6), "rho_cortex": u(950, 1150), "rho_marrow": u(-20, 60)}
    soft = {
        "dorsal_mm": u(2.5, 5.0), "palmar_mm": u(6.0, 12.0), "radial_mm": u(3.0, 6.0), "ulnar_mm": u(3.0, 6.0),
        "skin_mm": u(0.9, 1.8), "smoothness_mm": u(4.0, 7.0),
        "rho_fat": u(-70, -20), "rho_muscle": u(10, 50), "rho_tendon": u(60, 120), "rho_skin": u(30, 80),
        "rho_joint": u(15, 60), "rho_pannus": u(20, 80),
        "extensor": [(u(-1.0, 1.0), u(1.5, 2.2), u(0.6, 0.9)) for _ in mcs],  # (x offset, half-width, half-height)
        "flexor": [(u(-1.0, 1.0), u(2.2, 3.4), u(1.8, 2.5), u(2.0, 3.5)) for _ in mcs],  # (+ gap from bone)
        "interossei": [(u(3.0, 5.0), u(2.0, 4.0)) for _ in mcs[:-1]],
        "mc3_gap_target_mm": mc3_gap, "mc3_gap_mm": achieved, "mc3_close": bool(close), "narrow_joint": bool(narrow),
    }
    return Hand(mcs, phalanges, thumb, soft)
