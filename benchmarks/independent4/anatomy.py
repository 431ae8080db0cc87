"""The hand's anatomy as soft unions of ellipsoids ("blobs"), warped by one B-spline free-form deformation.

Every solid is an implicit function: the normalised ellipsoidal radius r_i = |(q - c_i) / s_i| of each
blob, joined by a smooth minimum rho = -log(sum exp(-k r_i)) / k. The solid is rho <= 1; the
first-order distance to its surface is phi = (1 - rho) / |grad rho| (positive inside), which gives
the cortex's inner surface (phi = t) and the joint's cup (the phalanx minus the metacarpal grown by
the joint space). Coordinates are millimetres in the local frame of a RIGHT hand: z distal ->
proximal from the field's first slice, y dorsal -> palmar, x radial -> ulnar, MC2's axis at y = x = 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

K_BONE = 9.0  # sharpness of the bones' smooth union (fillets of about 1/k of a semi-axis)
K_SKIN = 10.0  # the hand's outline: a union with fillets of a few mm (its blobs are large)


@dataclass
class Blobs:
    centres: np.ndarray  # (n, 3) z, y, x mm
    semi: np.ndarray  # (n, 3) semi-axes mm
    k: float = K_BONE

    def rho(self, qz, qy, qx):
        """Smooth minimum of the normalised radii, evaluated stably (running log-sum-exp)."""
        m = s = None
        for c, a in zip(self.centres, self.semi):
            r = np.sqrt(((qz - c[0]) / a[0]) ** 2 + ((qy - c[1]) / a[1]) ** 2 + ((qx - c[2]) / a[2]) ** 2)
            if m is None:
                m, s = r, np.ones_like(r)
            else:
                m_new = np.minimum(m, r)
                s = s * np.exp(-self.k * (m - m_new)) + np.exp(-self.k * (r - m_new))
                m = m_new
        return (m - np.log(s) / self.k).astype(np.float32)

    def bbox(self, pad: float = 0.0) -> np.ndarray:
        """(2, 3) lower/upper corners that hold rho <= 1 (the union bulges by at most log(n)/k)."""
        grow = 1.0 + np.log(len(self.centres)) / self.k
        lo = (self.centres - self.semi * grow).min(axis=0) - pad
        hi = (self.centres + self.semi * grow).max(axis=0) + pad
        return np.stack([lo, hi])


@dataclass
class Bone:
    name: str
    blobs: Blobs
    tip_z: float
    axis_yx: tuple
    cortex_head: float  # mm, subchondral cortex over the head
    cortex_shaft: float  # mm, cortex of the shaft
    neck_z: float  # where the cortex thickens (middle of the ramp)
    cortex_density: float
    tissue_density: float  # trabecular tissue
    marrow_density: float
    cut_by: str | None = None  # the metacarpal whose grown head hollows this phalanx
    joint_gap: float = 0.0
    texture: str = "tile"  # "mc2": its own explicit network; "tile": the shared network
    pits: list = field(default_factory=list)  # (centre (3,), semi (3,)) of erosions


def smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def metacarpal(rng, name, x0, y0, tip, width, depth, z_end, shaft_frac, cortex_head, cortex_shaft,
               densities) -> Bone:
    """A metacarpal head, neck and shaft from 5 + n blobs; width/depth are the head's (radial-ulnar / dorsal-palmar)."""
    W, D = width / 2 / 1.03, depth / 2 / 1.0  # the union bulges about 3 % in width
    az = rng.uniform(4.5, 6.0)  # half-length of the articular dome: MC heads are ~10-13 mm long
    zc = tip + az
    cs, ss = [(zc, y0 + 0.06 * D, x0)], [(az, 0.93 * D, 0.9 * W)]
    for sx in (-1, 1):
        cs.append((zc + 0.6, y0 + 0.42 * D, x0 + sx * 0.48 * W))  # palmar condyles: the head is wider palmarly
        ss.append((0.82 * az, 0.58 * D, 0.52 * W))
        cs.append((zc + 1.8, y0 - 0.30 * D, x0 + sx * 0.60 * W))  # dorsal tubercles of the collateral ligaments
        ss.append((2.6, 0.42 * D, 0.38 * W))
    Ws, Ds = shaft_frac * W, shaft_frac * D * 1.05
    z = zc + 2.0
    while z < z_end + 4.0:
        f = float(smoothstep((z - zc) / 9.0))
        cs.append((z, y0 + 0.05 * D * (1 - f) - 0.08 * D * f, x0))
        ss.append((2.7, 0.88 * D * (1 - f) + Ds * f, 0.86 * W * (1 - f) + Ws * f))
        z += 1.6
    neck = zc + rng.uniform(3.0, 6.0)
    return Bone(name, Blobs(np.array(cs, float), np.array(ss, float)), tip, (y0, x0), cortex_head, cortex_shaft,
                neck, *densities)


def phalanx_base(rng, name, mc: Bone, width, depth, gap, densities) -> Bone:
    """The proximal phalanx's base: blobs reaching over MC's head, hollowed by MC grown by the joint space."""
    y0, x0 = mc.axis_yx
    W, D = width / 2, depth / 2
    pa = rng.uniform(4.0, 5.0)
    reach = rng.uniform(1.6, 2.6)  # how far the base's rim wraps proximally past the joint line
    zc = mc.tip_z - gap - pa + reach
    cs = [(zc, y0 + 0.1 * D, x0)]
    ss = [(pa, 0.82 * D, 0.92 * W)]
    for sx in (-1, 1):  # tubercles of the collateral ligaments, palmar-lateral
        cs.append((zc + 0.4, y0 + 0.25 * D, x0 + sx * 0.62 * W))
        ss.append((0.75 * pa, 0.5 * D, 0.38 * W))
    for j in range(1, 4):  # the shaft, distally (mostly outside the field)
        cs.append((zc - pa - 1.2 * j, y0 + 0.05 * D, x0))
        ss.append((2.5, 0.62 * D, 0.62 * W))
    t = rng.uniform(0.2, 0.4)
    return Bone(name, Blobs(np.array(cs, float), np.array(ss, float)), zc - pa, (y0, x0), t, t + 0.3,
                zc - pa - 2.0, *densities, cut_by=mc.name, joint_gap=gap)


def thumb(rng, x0, y0, z0, radius, densities) -> Bone:
    """The thumb's metacarpal/phalanx cut obliquely: a chain of spheres along an axis running proximally-ulnar-palmar."""
    d = np.array([1.0, rng.uniform(0.15, 0.4), rng.uniform(0.45, 0.8)])
    d /= np.linalg.norm(d)
    cs = [np.array([z0, y0, x0]) + d * s for s in np.arange(-14.0, 22.0, 1.5)]
    ss = [(radius, radius * rng.uniform(0.85, 0.95), radius)] * len(cs)
    t = rng.uniform(0.5, 1.0)
    return Bone("thumb", Blobs(np.array(cs, float), np.array(ss, float)), z0, (y0, x0), t, t,
                z0, *densities)


@dataclass
class FFD:
    """A cubic B-spline free-form deformation: control displacements on a coarse lattice."""
    origin: np.ndarray  # (3,) mm of the fine grid's first node
    step: float  # mm of the fine grid on which the displacement is tabulated
    disp: np.ndarray  # (3, nz, ny, nx) float32, mm

    @classmethod
    def draw(cls, rng, lo, hi, spacing, amplitude, step=0.5):
        lo = np.asarray(lo, float) - 2 * spacing
        hi = np.asarray(hi, float) + 2 * spacing
        n_ctrl = np.ceil((hi - lo) / spacing).astype(int) + 1
        ctrl = rng.normal(0.0, amplitude, size=(3, *n_ctrl)).astype(np.float64)
        n_fine = np.ceil((hi - lo) / step).astype(int) + 1
        # the cubic B-spline is separable: one weight matrix per axis (fine nodes x control nodes)
        mats = []
        for a in range(3):
            x = np.arange(n_fine[a])[:, None] * step / spacing - np.arange(n_ctrl[a])[None, :]
            ax = np.abs(x)
            mats.append(np.where(ax < 1, 2 / 3 - ax ** 2 + ax ** 3 / 2, np.where(ax < 2, (2 - ax) ** 3 / 6, 0.0)))
        disp = np.einsum("cijk,ai,bj,dk->cabd", ctrl, *mats, optimize=True).astype(np.float32)
        return cls(lo, step, disp)

    def displacement(self, qz, qy, qx):
        """D(q) (trilinear in the tabulated smooth field)."""
        coords = [(qz - self.origin[0]) / self.step, (qy - self.origin[1]) / self.step, (qx - self.origin[2]) / self.step]
        return [ndimage.map_coordinates(self.disp[c], coords, order=1, mode="nearest").astype(np.float32)
                for c in range(3)]


@dataclass
class Tendon:
    y: float
    x: float
    sy: float
    sx: float
    slope: tuple  # (dy/dz, dx/dz): tendons run nearly along the axis


@dataclass
class Hand:
    bones: list
    skin: Blobs
    tendons: list
    ffd: FFD
    params: dict
    extent: np.ndarray  # (2, 2) y/x mm of the whole hand (bounding box of the outline)


def _draw_densities(rng, bone_kind="mc"):
    cortex = rng.uniform(850.0, 1100.0)  # cortical TMD at HR-pQCT resolution, mg HA/cm3
    tissue = rng.uniform(800.0, 1000.0)  # trabecular tissue before partial volume
    marrow = rng.uniform(-40.0, 20.0)  # red/yellow marrow mixture
    return cortex, tissue, marrow


def draw_hand(rng, z_len: float) -> Hand:
    """All bones, tendons and the outline of one right hand, from one random stream."""
    p: dict = {}
    p["mc2_width_mm"] = rng.uniform(13.0, 15.0)
    p["mc2_depth_mm"] = rng.uniform(12.0, 14.0)
    p["mc2_tip_mm"] = rng.uniform(0.8, 2.5)  # slice 0 lies this far distal of the tip
    narrow = rng.random() < 0.35
    p["mc2_joint_gap_mm"] = rng.uniform(0.4, 0.8) if narrow else rng.uniform(0.8, 2.5)
    p["mc2_cortex_head_mm"] = rng.uniform(0.2, 0.6)
    p["mc2_cortex_shaft_mm"] = rng.uniform(0.6, 2.0)
    p["shaft_fraction"] = rng.uniform(0.62, 0.72)
    touching = rng.random() < 0.33
    p["mc23_gap_mm"] = rng.uniform(0.15, 0.6) if touching else rng.uniform(0.8, 3.5)
    z_end = z_len + 2.0
    bones = []
    mc2 = metacarpal(rng, "MC2", 0.0, 0.0, p["mc2_tip_mm"], p["mc2_width_mm"], p["mc2_depth_mm"], z_end,
                     p["shaft_fraction"], p["mc2_cortex_head_mm"], p["mc2_cortex_shaft_mm"], _draw_densities(rng))
    mc2.texture = "mc2"
    p["mc2_cortex_density"], p["mc2_tissue_density"], p["mc2_marrow_density"] = (
        mc2.cortex_density, mc2.tissue_density, mc2.marrow_density)
    bones.append(mc2)
    # MC3..MC5 in a row: the transverse arch is highest at MC3 and bends palmarly at the ends; the MCP
    # joints cascade proximally towards MC5 (MC3's head is the most distal).
    widths = [rng.uniform(13.0, 15.5), rng.uniform(10.5, 12.5), rng.uniform(10.5, 12.5)]
    depths = [rng.uniform(12.5, 14.5), rng.uniform(11.0, 13.0), rng.uniform(10.5, 12.5)]
    tips = [p["mc2_tip_mm"] - rng.uniform(0.0, 2.0), p["mc2_tip_mm"] + rng.uniform(1.0, 3.0),
            p["mc2_tip_mm"] + rng.uniform(3.0, 7.0)]
    ys = [-rng.uniform(1.0, 2.5), rng.uniform(-0.5, 1.0), rng.uniform(2.0, 5.0)]
    gaps = [p["mc23_gap_mm"], rng.uniform(1.0, 3.5), rng.uniform(1.0, 3.5)]
    x_prev, w_prev = 0.0, p["mc2_width_mm"]
    for i, name in enumerate(("MC3", "MC4", "MC5")):
        x = x_prev + w_prev / 2 + gaps[i] + widths[i] / 2
        ch = rng.uniform(0.2, 0.6)
        mc = metacarpal(rng, name, x, ys[i], tips[i], widths[i], depths[i], z_end, rng.uniform(0.6, 0.72), ch,
                        rng.uniform(0.6, 2.0), _draw_densities(rng))
        bones.append(mc)
        x_prev, w_prev = x, widths[i]
    p["mc3_x_mm"] = bones[1].axis_yx[1]
    for mc in list(bones):
        gap = p["mc2_joint_gap_mm"] if mc.name == "MC2" else rng.uniform(0.6, 2.0)
        w = float(np.ptp(mc.blobs.bbox()[:, 2])) * rng.uniform(0.85, 0.95)
        dd = float(np.ptp(mc.blobs.bbox()[:, 1])) * rng.uniform(0.7, 0.8)
        bones.append(phalanx_base(rng, "P1_" + mc.name[2:], mc, w, dd, gap, _draw_densities(rng)))
    p["thumb"] = bool(rng.random() < 0.85)
    if p["thumb"]:
        p["thumb_x_mm"] = -rng.uniform(20.0, 28.0)
        p["thumb_y_mm"] = rng.uniform(10.0, 18.0)
        bones.append(thumb(rng, p["thumb_x_mm"], p["thumb_y_mm"], z_len / 2, rng.uniform(4.5, 5.5),
                           _draw_densities(rng)))
    # the outline: one long ellipsoid per metacarpal, the palm under them, the thenar eminence
    dorsal = rng.uniform(2.5, 5.0)  # dorsal soft tissue over the heads (skin, extensor hood)
    palmar = rng.uniform(8.0, 14.0)  # palmar pad, flexor tendons, lumbricals
    p["dorsal_soft_mm"], p["palmar_soft_mm"] = dorsal, palmar
    cs, ss = [], []
    zc = z_len / 2
    mcs = [b for b in bones if b.name.startswith("MC")]
    for mc in mcs:
        bb = mc.blobs.bbox()
        y_lo, y_hi = bb[0, 1] - dorsal, bb[1, 1] + palmar
        cs.append((zc, (y_lo + y_hi) / 2, mc.axis_yx[1]))
        ss.append((60.0, (y_hi - y_lo) / 2, (bb[1, 2] - bb[0, 2]) / 2 + 2.5))
    x_lo, x_hi = mcs[0].axis_yx[1], mcs[-1].axis_yx[1]
    half_d = p["mc2_depth_mm"] / 2
    # the palm's pad under the heads, and the extensor hood over them (shallow valleys between knuckles)
    cs.append((zc, 3.0 + palmar / 2, (x_lo + x_hi) / 2))
    ss.append((60.0, half_d + palmar / 2 + 0.5, (x_hi - x_lo) / 2 + 5.0))
    cs.append((zc, -half_d - dorsal + 4.0, (x_lo + x_hi) / 2))
    ss.append((60.0, 4.0, (x_hi - x_lo) / 2 + 3.0))
    if p["thumb"]:
        tb = bones[-1]
        r = float(tb.blobs.semi[0, 0])
        # the thenar eminence around the thumb (which drifts a few mm across the field), and the first web
        cs.append((zc, p["thumb_y_mm"], p["thumb_x_mm"] + 2.0))
        ss.append((60.0, r + 5.0, r + 9.0))
        cs.append((zc, (p["thumb_y_mm"] + 3.0) / 2, p["thumb_x_mm"] / 2 + 4.0))
        ss.append((60.0, 8.0, abs(p["thumb_x_mm"]) / 2 + 2.0))
    skin = Blobs(np.array(cs, float), np.array(ss, float), k=K_SKIN)
    tendons = []
    for mc in mcs:
        bb = mc.blobs.bbox()
        y0, x0 = mc.axis_yx
        slope = (rng.normal(0, 0.03), rng.normal(0, 0.03))
        tendons.append(Tendon(bb[0, 1] - 1.3, x0 + rng.normal(0, 0.6), rng.uniform(0.6, 1.0), rng.uniform(1.8, 3.0), slope))
        tendons.append(Tendon(bb[1, 1] + 2.6, x0 + rng.normal(0, 0.6), rng.uniform(1.8, 2.6), rng.uniform(2.2, 3.2), slope))
    lo = np.minimum(skin.bbox()[0], np.min([b.blobs.bbox()[0] for b in bones], axis=0))
    hi = np.maximum(skin.bbox()[1], np.max([b.blobs.bbox()[1] for b in bones], axis=0))
    lo[0], hi[0] = -3.0, z_len + 3.0
    p["ffd_spacing_mm"] = rng.uniform(3.5, 6.0)  # bumps of a few mm, as the head's contour has
    p["ffd_amplitude_mm"] = rng.uniform(0.2, 0.5)  # keeps the head's size within its anatomical range
    ffd = FFD.draw(rng, lo, hi, p["ffd_spacing_mm"], p["ffd_amplitude_mm"])
    # the hand's outline bounding box (the whole field's extent), from the skin's union
    yy, xx = np.meshgrid(np.arange(lo[1], hi[1], 0.4), np.arange(lo[2], hi[2], 0.4), indexing="ij")
    inside = np.zeros(yy.shape, bool)
    for z in np.linspace(0.0, z_len, 4):
        inside |= skin.rho(np.full(yy.shape, z), yy, xx) <= 1.0
    for b in bones:  # bones are inside the hand; should any poke out, the field still holds them
        sel = (b.blobs.centres[:, 0] > -3.0) & (b.blobs.centres[:, 0] < z_len + 3.0)
        if not sel.any():
            continue
        bb = Blobs(b.blobs.centres[sel], b.blobs.semi[sel]).bbox()
        inside |= (yy >= bb[0, 1]) & (yy <= bb[1, 1]) & (xx >= bb[0, 2]) & (xx <= bb[1, 2])
    iy, ix = np.nonzero(inside)
    extent = np.array([[yy[iy.min(), 0] - 0.4, xx[0, ix.min()] - 0.4], [yy[iy.max(), 0] + 0.4, xx[0, ix.max()] + 0.4]])
    return Hand(bones, skin, tendons, ffd, p, extent)


def erosion_pits(rng, mc2: Bone, n: int) -> list:
    """Pits at MC2's joint margin (the bare areas, mostly radial and dorsal): centre on the surface."""
    pits = []
    for _ in range(n):
        ang = np.deg2rad(rng.uniform(150.0, 290.0))  # angle in the y-x plane from +x (ulnar); 180 = radial, 270 = dorsal
        z = mc2.tip_z + rng.uniform(2.5, 6.0)
        direction = np.array([0.0, np.sin(ang), np.cos(ang)])
        rs = np.linspace(0.0, 12.0, 481)
        pts = np.array([[z, 0.0, 0.0]]) + rs[:, None] * direction
        rho = mc2.blobs.rho(pts[:, 0], pts[:, 1], pts[:, 2])
        r_surf = rs[np.argmax(rho > 1.0)]
        size = rng.uniform(0.6, 2.0)  # erosions of 0.5-4 mm diameter in RA MCP joints
        semi = np.array([size * rng.uniform(0.8, 1.3), size, size])
        centre = np.array([z, 0.0, 0.0]) + (r_surf + 0.25 * size) * direction
        pits.append((centre, semi))
    return pits
