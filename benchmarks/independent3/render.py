"""Densities (mg HA/cm3) and the MC2 truth on a block of the hand-frame voxel lattice.

The lattice is anchored by the case (its origin and voxel size); a block is a range of lattice
indices. Everything random that is laid on a grid (trabecular texture, endosteal irregularity) is
drawn on a *canonical* box per bone, fixed by the anatomy, the voxel size and the nominal stack, so
a repeat scan that renders a larger block sees exactly the same bone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, special

from .anatomy import Hand, inside_polygon, smoothstep


@dataclass
class Lattice:
    x0: float
    y0: float
    z0: float
    v: float

    def xs(self, i0, i1):
        return self.x0 + np.arange(i0, i1) * self.v

    def ys(self, j0, j1):
        return self.y0 + np.arange(j0, j1) * self.v

    def zs(self, k0, k1):
        return self.z0 + np.arange(k0, k1) * self.v

    def index(self, x, y, z):
        return (z - self.z0) / self.v, (y - self.y0) / self.v, (x - self.x0) / self.v


def band_pass_field(shape, v, seed, wavelength_mm, bandwidth, elongation, low_mm=1.6):
    """Two unit-variance Gaussian random fields from one white noise: a band-pass one (ring of
    radius 1/wavelength in frequency, squeezed along z by ``elongation`` so structures run along the
    bone) and a low-pass one (scale ``low_mm``)."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(shape, dtype=np.float32)
    spec = np.fft.rfftn(white)
    del white
    kz = np.fft.fftfreq(shape[0], d=v)[:, None, None]
    ky = np.fft.fftfreq(shape[1], d=v)[None, :, None]
    kx = np.fft.rfftfreq(shape[2], d=v)[None, None, :]
    k = np.sqrt((kz * elongation) ** 2 + ky ** 2 + kx ** 2)
    k0 = 1.0 / wavelength_mm
    band = np.exp(-0.5 * ((k - k0) / (bandwidth * k0)) ** 2).astype(np.float32)
    low = np.exp(-0.5 * (np.sqrt(kz ** 2 + ky ** 2 + kx ** 2) * low_mm * 2 * np.pi) ** 2).astype(np.float32)
    out = []
    for filt in (band, low):
        f = np.fft.irfftn(spec * filt, s=shape, axes=(0, 1, 2)).astype(np.float32)
        f -= f.mean()
        f /= max(float(f.std()), 1e-12)
        out.append(f)
    return out


def rough(points, seed, amplitude):
    """Analytic roughness: a sum of 8 random plane waves (wavelengths 0.5-1.5 mm) at points (n, 3)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(points.shape[0])
    for _ in range(8):
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        out += np.cos(points @ d * 2 * np.pi / rng.uniform(0.5, 1.5) + rng.uniform(0, 2 * np.pi))
    return amplitude * out / np.sqrt(4.0)


class Block:
    """Index ranges (k0, k1, j0, j1, i0, i1) of the lattice."""

    def __init__(self, k0, k1, j0, j1, i0, i1):
        self.k0, self.k1, self.j0, self.j1, self.i0, self.i1 = (int(a) for a in (k0, k1, j0, j1, i0, i1))

    @property
    def shape(self):
        return (self.k1 - self.k0, self.j1 - self.j0, self.i1 - self.i0)

    def intersect(self, other: "Block"):
        b = Block(max(self.k0, other.k0), min(self.k1, other.k1), max(self.j0, other.j0), min(self.j1, other.j1),
                  max(self.i0, other.i0), min(self.i1, other.i1))
        return b if all(s > 0 for s in b.shape) else None

    def slices_in(self, outer: "Block"):
        return (slice(self.k0 - outer.k0, self.k1 - outer.k0), slice(self.j0 - outer.j0, self.j1 - outer.j0),
                slice(self.i0 - outer.i0, self.i1 - outer.i0))


def _bone_box(lat: Lattice, canon_k, xmin, xmax, ymin, ymax, zmin, zmax) -> Block | None:
    k0 = max(int(np.floor((zmin - lat.z0) / lat.v)), canon_k[0])
    k1 = min(int(np.ceil((zmax - lat.z0) / lat.v)) + 1, canon_k[1])
    if k1 <= k0:
        return None
    return Block(k0, k1, np.floor((ymin - lat.y0) / lat.v) - 2, np.ceil((ymax - lat.y0) / lat.v) + 3,
                 np.floor((xmin - lat.x0) / lat.v) - 2, np.ceil((xmax - lat.x0) / lat.v) + 3)


def _stack_mask(contour_at, lat: Lattice, box: Block) -> np.ndarray:
    gx, gy = lat.xs(box.i0, box.i1), lat.ys(box.j0, box.j1)
    out = np.zeros(box.shape, bool)
    for n, z in enumerate(lat.zs(box.k0, box.k1)):
        c = contour_at(z)
        if c is not None:
            out[n] = inside_polygon(c[0], c[1], gx, gy)
    return out


def _fill_bone(mask, depth, t_of_slice, cortex_of_t, bvtv_of_t, params, fields, v):
    """Densities of one bone inside its mask: cortex (irregular endosteal surface), thresholded
    band-pass trabeculae (plate- or rod-like), marrow."""
    band, low = fields
    t = t_of_slice[:, None, None]
    cortex_t = np.asarray([cortex_of_t(tt) for tt in t_of_slice], np.float32)[:, None, None]
    thick = cortex_t * (1 + 0.3 * np.clip(low, -2, 2)) + 0.25 * v * band  # endosteal wander, fine roughness
    thick = np.maximum(thick, 0.6 * v)
    cortex = mask & (depth < thick)
    inner_depth = np.maximum(depth - thick, 0)
    bv = np.asarray([bvtv_of_t(tt) for tt in t_of_slice], np.float32)[:, None, None]
    bv = np.clip(bv * (1 + 0.5 * np.exp(-inner_depth / 0.7)), 0.01, 0.45)
    plate = low < special.ndtri(params["plate_fraction"])
    trab = np.where(plate, np.abs(band) < special.ndtri((1 + bv) / 2), band > special.ndtri(1 - bv))
    dens = np.where(trab, params["rho_trab"], params["rho_marrow"]).astype(np.float32)
    rho_c = params["rho_cortex"] + (params["rho_plate"] - params["rho_cortex"]) * (1 - smoothstep((t - params["plate_t"]) / 3.0))
    dens = np.where(cortex, rho_c * (1 + 0.03 * np.clip(low, -2, 2)), dens)
    return dens


def envelope(hand: Hand, z: float, xx, yy):
    """Skin surface at height z as a 2-D implicit function (about mm, negative inside): a smooth
    minimum of ellipses around each metacarpal (thin dorsally, thick palmarly) and the thumb; and
    (cx, cy, rx, ry_dorsal, ry_palmar) of each metacarpal's contour at z."""
    s = hand.soft
    mcs = hand.metacarpals
    terms, radii = [], []
    for m_i, mc in enumerate(mcs):
        c = mc.contour(max(z, mc.tip_z + 0.5 * mc.dome_hx))
        cx, cy = mc.centre(z)
        rx = 0.5 * (c[0].max() - c[0].min())
        ry_d, ry_p = cy - c[1].min(), c[1].max() - cy
        radii.append((cx, cy, rx, ry_d, ry_p))
        left = s["radial_mm"] if m_i == 0 else 4.0
        right = s["ulnar_mm"] if m_i == len(mcs) - 1 else 4.0
        ax = rx + 0.5 * (left + right)
        ay = 0.5 * (ry_d + ry_p + s["dorsal_mm"] + s["palmar_mm"])
        ecx = cx + 0.5 * (right - left)
        ecy = cy + 0.5 * (ry_p + s["palmar_mm"] - ry_d - s["dorsal_mm"])
        terms.append((np.sqrt(((xx - ecx) / ax) ** 2 + ((yy - ecy) / ay) ** 2) - 1) * np.sqrt(ax * ay))
    if hand.thumb:
        th = hand.thumb
        terms.append(np.sqrt((xx - th["x"]) ** 2 + (yy - th["y"]) ** 2) - (th["r_bone"] + th["r_soft"]))
    k = s["smoothness_mm"]
    stack = np.stack(terms)
    m = stack.min(0)
    return m - k * np.log(np.exp(-(stack - m) / k).sum(0)), radii


def render(hand: Hand, lat: Lattice, block: Block, canon_k: tuple, seed: int, pits: list, air: float):
    """density (float32), truth (bool), tissue label (uint8: 0 air, 1 fat, 2 muscle, 3 other soft, 4 bone)."""
    v = lat.v
    nz, ny, nx = block.shape
    gx, gy, gz = lat.xs(block.i0, block.i1), lat.ys(block.j0, block.j1), lat.zs(block.k0, block.k1)
    s = hand.soft
    density = np.full(block.shape, air, np.float32)
    label = np.zeros(block.shape, np.uint8)
    mcs = hand.metacarpals
    yy, xx = np.meshgrid(gy, gx, indexing="ij")
    # --- soft tissue, slice by slice (2-D): a smooth union of envelopes around the bones
    for n, z in enumerate(gz):
        f, radii = envelope(hand, z, xx, yy)
        inside = f < 0
        lab = np.where(inside, 1, 0).astype(np.uint8)
        dens = np.where(inside, s["rho_fat"], air).astype(np.float32)
        muscle = np.zeros_like(inside)
        for m_i in range(len(mcs) - 1):
            (x1, y1, r1, _, _), (x2, y2, r2, _, _) = radii[m_i], radii[m_i + 1]
            ay, dy = s["interossei"][m_i]
            ecx, ecy = 0.5 * (x1 + x2), 0.5 * (y1 + y2) + dy
            ax = 0.5 * abs(x2 - x1)
            muscle |= ((xx - ecx) / ax) ** 2 + ((yy - ecy) / ay) ** 2 < 1
        cx, cy, rx, _, _ = radii[0]
        muscle |= ((xx - (cx - rx - 1.5)) / 2.5) ** 2 + ((yy - (cy + 1.5)) / 4.5) ** 2 < 1  # first dorsal interosseous
        if hand.thumb:
            th = hand.thumb
            muscle |= (xx - th["x"] - 1.5) ** 2 + (yy - th["y"] + 1.0) ** 2 < (th["r_bone"] + 0.7 * th["r_soft"]) ** 2
        muscle &= f < -s["skin_mm"]
        lab[muscle] = 2
        dens[muscle] = s["rho_muscle"]
        tendon = np.zeros_like(inside)
        for m_i, (cx, cy, rx, ry_d, ry_p) in enumerate(radii):
            ox, hw, hh = s["extensor"][m_i]
            tendon |= ((xx - cx - ox) / hw) ** 2 + ((yy - (cy - ry_d - hh - 0.25)) / hh) ** 2 < 1
            ox, hw, hh, gap = s["flexor"][m_i]
            tendon |= ((xx - cx - ox) / hw) ** 2 + ((yy - (cy + ry_p + gap + hh)) / hh) ** 2 < 1
        tendon &= f < -0.3
        lab[tendon] = 3
        dens[tendon] = s["rho_tendon"]
        skin = inside & (f > -s["skin_mm"])
        lab[skin] = 3
        dens[skin] = s["rho_skin"]
        density[n], label[n] = dens, lab
    del yy, xx
    # --- bones
    any_bone = np.zeros(block.shape, bool)
    mc2 = mcs[0]
    mc2_mask_full = np.zeros(block.shape, bool)
    mc2_guard = np.zeros(block.shape, bool)
    phal_by_mc = {p.of: p for p in hand.phalanges}
    for b_i, mc in enumerate(mcs):
        R = mc.max_radius() + 0.5
        ph = phal_by_mc[mc.name]
        z_lo = mc.tip_z - ph.gap_mm - 6.0
        box = _bone_box(lat, canon_k, mc.x0 - R - 1.5, mc.x0 + R + 1.5, mc.y0 - R - 1.5, mc.y0 + R + 1.5, z_lo, 1e9)
        if box is None:
            continue
        # widen for the fan of the axis over the box's height
        zspan = lat.zs(box.k0, box.k1)
        cxs, cys = mc.centre(zspan)
        box = Block(box.k0, box.k1, box.j0 + np.floor(min(0, cys.min() - mc.y0) / v), box.j1 + np.ceil(max(0, cys.max() - mc.y0) / v),
                    box.i0 + np.floor(min(0, cxs.min() - mc.x0) / v), box.i1 + np.ceil(max(0, cxs.max() - mc.x0) / v))
        if box.intersect(block) is None:
            continue
        mc_mask = _stack_mask(mc.contour, lat, box)
        ph_outer = _stack_mask(lambda z: ph.contour(z, mc), lat, box)
        # the cup: phalanx voxels farther than the joint space from the head (3-D distance), computed
        # only over the phalanx's slices and the joint space's reach proximal of them
        ph_mask = np.zeros(box.shape, bool)
        ph_depth = np.zeros(box.shape, np.float32)
        kz = np.nonzero(ph_outer.any(axis=(1, 2)))[0]
        if kz.size:
            pk0, pk1 = kz[0], min(box.shape[0], kz[-1] + 1 + int(np.ceil((ph.gap_mm + 0.2) / v)))
            sub = slice(pk0, pk1)
            dist = ndimage.distance_transform_edt(~mc_mask[sub], sampling=v) if mc_mask[sub].any() else np.inf
            ph_mask[sub] = ph_outer[sub] & (dist > ph.gap_mm)
            ph_depth[sub] = ndimage.distance_transform_edt(ph_mask[sub], sampling=v)
        joint = ph_outer & ~ph_mask & ~mc_mask
        band, low = band_pass_field(box.shape, v, [seed, 3, 2, b_i], mc.trab_wavelength_mm, mc.trab_bandwidth,
                                    mc.trab_elongation)
        inter = box.intersect(block)
        sb, sr = inter.slices_in(box), inter.slices_in(block)
        t_slices = lat.zs(inter.k0, inter.k1) - mc.tip_z
        mc_depth = ndimage.distance_transform_edt(mc_mask, sampling=v)[sb]
        dens_mc = _fill_bone(mc_mask[sb], mc_depth, t_slices, mc.cortex_mm, mc.bvtv,
                             {"plate_fraction": mc.trab_plate_fraction, "rho_trab": mc.rho_trab, "rho_marrow": mc.rho_marrow,
                              "rho_cortex": mc.rho_cortex, "rho_plate": mc.rho_plate, "plate_t": mc.neck_start},
                             (band[sb], low[sb]), v)
        band_p = np.roll(band, (7, 11, 13), axis=(0, 1, 2))[sb]  # the phalanx's own texture (decorrelated)
        low_p = np.roll(low, (5, 17, 3), axis=(0, 1, 2))[sb]
        del band, low
        dens_ph = _fill_bone(ph_mask[sb], ph_depth[sb], -t_slices,
                             lambda tt, c=ph.cortex_mm: c, lambda tt, b=ph.bvtv: b,
                             {"plate_fraction": 0.5, "rho_trab": ph.rho_trab, "rho_marrow": ph.rho_marrow,
                              "rho_cortex": ph.rho_cortex, "rho_plate": ph.rho_cortex, "plate_t": 0.0},
                             (band_p, low_p), v)
        dview, lview = density[sr], label[sr]
        jm = joint[sb] & (lview > 0)
        dview[jm] = s["rho_joint"]
        lview[jm] = 3
        for m, d in ((ph_mask[sb], dens_ph), (mc_mask[sb], dens_mc)):
            if b_i > 0:
                m = m & ~mc2_mask_full[sr]  # a neighbour never takes MC2's voxels
            dview[m] = d[m]
            lview[m] = 4
            any_bone[sr] |= m
        if b_i == 0:
            mc2_mask_full[sr] = mc_mask[sb]
            r_g = int(np.ceil(0.15 / v))
            mc2_guard[sr] = ndimage.binary_dilation(mc_mask, iterations=r_g)[sb] & ~mc_mask[sb]
    # neighbours kept 0.15 mm clear of MC2's surface (their contours were placed >= 0.2 mm away)
    clear = mc2_guard & ~mc2_mask_full & any_bone
    density[clear] = s["rho_joint"]
    label[clear] = 3
    any_bone &= ~clear
    if hand.thumb:
        th = hand.thumb
        xx, yy = np.meshgrid(gx, gy)
        r = np.sqrt((xx - th["x"]) ** 2 + (yy - th["y"]) ** 2)
        bone2 = r < th["r_bone"]
        cort2 = bone2 & (r > th["r_bone"] - th["cortex_mm"])
        for n in range(nz):
            density[n][bone2] = th["rho_marrow"]
            density[n][cort2] = th["rho_cortex"]
            label[n][bone2] = 4
    # --- erosions: pits in MC2 filled with pannus; the pit is not bone
    truth = mc2_mask_full.copy()
    if pits:
        for p_i, pit in enumerate(pits):
            c, nrm, a_n, a_t, a_z = np.array(pit["centre"]), np.array(pit["normal"]), pit["depth_mm"], pit["half_width_mm"], pit["half_height_mm"]
            reach = max(a_n, a_t, a_z) * 1.4
            kk = (np.abs(gz - c[2]) < reach)
            jj = (np.abs(gy - c[1]) < reach)
            ii = (np.abs(gx - c[0]) < reach)
            if not (kk.any() and jj.any() and ii.any()):
                continue
            sub = np.ix_(kk, jj, ii)
            pz, py, px = np.meshgrid(gz[kk], gy[jj], gx[ii], indexing="ij")
            d = np.stack([px - c[0], py - c[1], pz - c[2]], -1).reshape(-1, 3)
            tang = np.array([-nrm[1], nrm[0], 0.0])
            q = (d @ nrm / a_n) ** 2 + (d @ tang / a_t) ** 2 + (d[:, 2] / a_z) ** 2
            pts = np.column_stack([px.ravel(), py.ravel(), pz.ravel()])
            pit_mask = (np.sqrt(q) < 1 + rough(pts, [seed, 3, 6, p_i], 0.18)).reshape(px.shape)
            sub_truth = truth[sub]
            soft_or_mc2 = sub_truth | (label[sub] != 4)
            fill = pit_mask & soft_or_mc2 & (label[sub] > 0)
            dsub = density[sub]
            dsub[fill] = s["rho_pannus"]
            density[sub] = dsub
            lsub = label[sub]
            lsub[fill & (lsub == 4)] = 3
            label[sub] = lsub
            truth[sub] = sub_truth & ~pit_mask
    return density, truth, label


def draw_pits(hand: Hand, seed: int, n: int, t_max_stack: float) -> list[dict]:
    """Erosion sites on MC2's bare areas near the joint margin (radial, dorsal, ulnar, palmar-radial)."""
    if n <= 0:
        return []
    rng = np.random.default_rng([seed, 3, 5])
    mc = hand.metacarpals[0]
    sectors = [180, 215, 250, 290, 325, 150]  # degrees; y is palmar, so 270 is dorsal
    if not hand.soft["mc3_close"]:
        sectors.append(0)
    rng.shuffle(sectors)
    pits = []
    for p_i in range(n):
        large = rng.random() < 0.35
        width = rng.uniform(2.2, 4.0) if large else rng.uniform(0.6, 2.2)
        t_lo = max(1.2, 0.45 * min(mc.dome_hx, mc.dome_hy)) + 0.3 * width
        t_hi = max(t_lo + 0.1, min(mc.neck_start + 1.0, t_max_stack - 0.6 * width - 0.4))
        t = rng.uniform(t_lo, t_hi)
        theta = np.deg2rad(sectors[p_i % len(sectors)] + rng.uniform(-12, 12))
        z = mc.tip_z + t
        cx, cy = mc.contour(z)
        idx = int(round(theta / (2 * np.pi) * cx.size)) % cx.size
        sx, sy = cx[idx], cy[idx]
        ax, ay = mc.centre(z)
        out = np.array([sx - ax, sy - ay])
        out /= np.linalg.norm(out)
        depth = width * rng.uniform(0.5, 0.9)
        centre = (sx + out[0] * 0.12 * width, sy + out[1] * 0.12 * width, z)
        pits.append({"centre": [float(a) for a in centre], "normal": [float(-out[0]), float(-out[1]), 0.0],
                     "width_mm": float(width), "depth_mm": float(depth), "half_width_mm": float(width / 2),
                     "half_height_mm": float(width / 2 * rng.uniform(0.7, 1.3)), "t_mm": float(t),
                     "sector_deg": float(np.rad2deg(theta) % 360), "large": bool(large)})
    return pits
