"""Voxelising the hand: exact point classification at voxel centres (the truth), area/volume-weighted
partial volume from 16 Halton sub-points in every voxel a surface crosses, sheet-overlap partial volume
for the trabeculae."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from . import anatomy as an
from . import hand as hd

F32 = np.float32


def _halton(n, base):
    out = []
    for i in range(1, n + 1):
        f, r, k = 1.0, 0.0, i
        while k:
            f /= base
            r += f * (k % base)
            k //= base
        out.append(r)
    return np.array(out)


#: 16 low-discrepancy sub-points of a voxel, in voxel units about its centre (z, y, x)
SUB = np.stack([_halton(16, 2), _halton(16, 3), _halton(16, 5)], axis=1) - 0.5


class Geometry:
    """Field voxel (k, j, i) -> field mm (x = i v, y = j v, z = k v) -> hand frame: hand = A @ f + b."""

    def __init__(self, shape, voxel, x0, y0, base_rot_deg, pose, pivot):
        self.shape, self.voxel = tuple(shape), float(voxel)
        psi = np.deg2rad(base_rot_deg)
        rz = np.deg2rad(pose.rotation_deg)
        tx, ty = (np.deg2rad(a) for a in pose.tilt_deg)

        def rot_z(a):
            return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])

        rx = np.array([[1, 0, 0], [0, np.cos(tx), -np.sin(tx)], [0, np.sin(tx), np.cos(tx)]])
        ry = np.array([[np.cos(ty), 0, np.sin(ty)], [0, 1, 0], [-np.sin(ty), 0, np.cos(ty)]])
        pose_r = rot_z(rz) @ ry @ rx  # moves the anatomy in the placement frame about the pivot
        shift = np.array([pose.shift_mm[1], pose.shift_mm[0], pose.z_shift_mm])
        pivot = np.asarray(pivot, dtype=float)
        # placement p = f + (x0, y0, 0); posed anatomy point q = R (p - pivot) + pivot + shift; hand = Rpsi^T q^-1
        inv = rot_z(psi).T @ pose_r.T
        self.A = inv
        self.b = inv @ (np.array([x0, y0, 0.0]) - pivot - shift) + rot_z(psi).T @ pivot
        self.A_inv = np.linalg.inv(self.A)

    def to_hand(self, fx, fy, fz):
        a, b = self.A.astype(F32), self.b.astype(F32)
        return tuple(a[r, 0] * fx + a[r, 1] * fy + a[r, 2] * fz + b[r] for r in range(3))

    def to_field(self, pts):
        return (np.asarray(pts) - self.b) @ self.A_inv.T

    def field_box(self, lo, hi, margin=2):
        """Voxel index ranges (k0, k1, j0, j1, i0, i1) covering a hand-frame box; None when outside."""
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        f = self.to_field(corners) / self.voxel
        nz, ny, nx = self.shape
        i0, j0, k0 = (int(np.floor(f[:, c].min())) - margin for c in range(3))
        i1, j1, k1 = (int(np.ceil(f[:, c].max())) + margin + 1 for c in range(3))
        k0, j0, i0 = max(k0, 0), max(j0, 0), max(i0, 0)
        k1, j1, i1 = min(k1, nz), min(j1, ny), min(i1, nx)
        if k0 >= k1 or j0 >= j1 or i0 >= i1:
            return None
        return k0, k1, j0, j1, i0, i1

    def hand_z_range(self):
        nz, ny, nx = self.shape
        v = self.voxel
        corners = np.array([[x, y, z] for x in (0, (nx - 1) * v) for y in (0, (ny - 1) * v) for z in (0, (nz - 1) * v)])
        hz = (corners @ self.A.T + self.b)[:, 2]
        return float(hz.min()), float(hz.max())


def bone_list(hand, pits):
    """(name, label function, texture, modulation function, cortex density, hand-frame box) per bone."""
    out = []
    for i, b in enumerate(hand["bones"]):
        t = np.linspace(-2, 16, 40).astype(F32)
        _, _, cx, cy, _ = an._mc_frame(b, t + F32(b["z_apex"]))
        r = 1.25 * max(b["a_r"], b["a_u"], b["b_d"], b["b_p"]) + 0.5
        lo = [float(cx.min()) - r, float(cy.min()) - r, b["z_apex"] - 0.3]
        hi = [float(cx.max()) + r, float(cy.max()) + r, 1e3]
        my_pits = pits if i == 0 else ()
        out.append((b["name"], lambda x, y, z, b=b, p=my_pits: an.metacarpal_label(b, x, y, z, p), b["texture"],
                    lambda u, v, t, b=b: an.metacarpal_modulation(b, u, v, t), b["rho_cortex"], lo, hi))
        ph = b["phalanx"]
        r = 1.3 * max(b["a_r"], b["a_u"], b["b_d"], b["b_p"]) + 1.5
        px, py = b["cx"] - b["slope_x"] * b["dome_depth"], b["cy"] - b["slope_y"] * b["dome_depth"]
        gauge = an.head_gauge(b)
        out.append((f"P1-{i + 2}", lambda x, y, z, b=b, g=gauge: an.phalanx_label(b, x, y, z, g), ph["texture"],
                    lambda u, v, t: np.ones_like(u), ph["rho_cortex"], [px - r, py - r, -1e3],
                    [px + r, py + r, b["z_apex"] + b["dome_depth"]]))
    th = hand["thumb"]
    if th["present"]:
        zs = np.linspace(-20, 30, 26)
        c = np.array([an.thumb_centre(th, z) for z in zs])
        r = 1.4 * max(th["radii"]) * (1 + th["bulge"]) / max(th["direction"][2], 0.3) + 1.0
        out.append(("thumb", lambda x, y, z: an.thumb_label(th, x, y, z), th["texture"],
                    lambda u, v, t: np.ones_like(u), th["rho_cortex"], [c[:, 0].min() - r, c[:, 1].min() - r, -20],
                    [c[:, 0].max() + r, c[:, 1].max() + r, 30]))
    return out


def render(hand, pits, geom: Geometry, air: float, bones, fat_every: int = 6):
    """Density volume (mg HA/cm3, float32), MC2 truth (uint8) and the pure-fat masks of sampled slices."""
    nz, ny, nx = geom.shape
    v = geom.voxel
    soft = hand["soft"]
    rho = np.empty(geom.shape, dtype=F32)
    fy, fx = np.meshgrid(np.arange(ny, dtype=F32) * F32(v), np.arange(nx, dtype=F32) * F32(v), indexing="ij")
    hz0, hz1 = geom.hand_z_range()
    boxes = []
    for item in hd.soft_items(hand):
        lo, hi = hd.item_box(item, 3 * v)
        box = geom.field_box(lo + [hz0 - 1.0], hi + [hz1 + 1.0])
        boxes.append(None if box is None else box[2:])
    for k in range(nz):
        x, y, z = geom.to_hand(fx, fy, F32(k * v))
        dens, frac = hd.soft_tissue(hand, x, y, z, v, boxes)
        rho[k] = frac * dens + (F32(1.0) - frac) * F32(air)
    del fx, fy
    truth = np.zeros(geom.shape, dtype=np.uint8)
    pannus_rho = float(np.mean([p["pannus_mg_ha_cm3"] for p in pits])) if pits else 60.0
    for name, label_fn, tex, mod_fn, rho_c, lo, hi in bones:
        lo = [lo[0], lo[1], max(lo[2], hz0 - 1.0)]
        hi = [hi[0], hi[1], min(hi[2], hz1 + 1.0)]
        if lo[2] >= hi[2]:
            continue
        box = geom.field_box(lo, hi)
        if box is None:
            continue
        _render_bone(rho, truth if name == "MC2" else None, geom, box, label_fn, tex, mod_fn, rho_c,
                     soft["marrow"], pannus_rho)
    fat_masks = {}
    for k in range(0, nz, fat_every):
        m = ndimage.binary_erosion(rho[k] == F32(soft["fat"]), iterations=5)
        if m.sum() > 200:
            fat_masks[k] = m
    return rho, truth, fat_masks


def _render_bone(rho, truth, geom, box, label_fn, tex, mod_fn, rho_c, marrow, pannus_rho, chunk=12):
    k0, k1, j0, j1, i0, i1 = box
    v = geom.voxel
    nz = geom.shape[0]
    jj = np.arange(j0, j1, dtype=F32) * F32(v)
    ii = np.arange(i0, i1, dtype=F32) * F32(v)
    for c0 in range(k0, k1, chunk):
        c1 = min(c0 + chunk, k1)
        h0, h1 = max(c0 - 1, 0), min(c1 + 1, nz)  # one halo slice each side for the surface test
        kk = np.arange(h0, h1, dtype=F32) * F32(v)
        fz, fy, fx = np.meshgrid(kk, jj, ii, indexing="ij")
        x, y, z = geom.to_hand(fx, fy, fz)
        lab, u, vv, t = label_fn(x, y, z)
        if not lab.any():
            continue
        surf = np.zeros(lab.shape, dtype=bool)
        for ax in range(3):
            d = np.diff(lab, axis=ax) != 0
            lo_sl = [slice(None)] * 3
            hi_sl = [slice(None)] * 3
            lo_sl[ax] = slice(0, -1)
            hi_sl[ax] = slice(1, None)
            surf[tuple(lo_sl)] |= d
            surf[tuple(hi_sl)] |= d
        core = slice(c0 - h0, c0 - h0 + (c1 - c0))
        lab, u, vv, t = lab[core], u[core], vv[core], t[core]
        surf = surf[core]
        fz, fy, fx = fz[core], fy[core], fx[core]
        frac = np.zeros((4,) + lab.shape, dtype=F32)
        for cls in (1, 2, 3):
            frac[cls] = (lab == cls) & ~surf
        idx = np.nonzero(surf)
        if idx[0].size:
            sx, sy, sz = fx[idx], fy[idx], fz[idx]
            counts = np.zeros((4, idx[0].size), dtype=F32)
            for dz, dy, dx in SUB:
                hx, hy, hz = geom.to_hand(sx + F32(dx * v), sy + F32(dy * v), sz + F32(dz * v))
                sl = label_fn(hx, hy, hz)[0]
                for cls in (1, 2, 3):
                    counts[cls] += sl == cls
            for cls in (1, 2, 3):
                frac[cls][idx] = counts[cls] / F32(len(SUB))
        occupied = frac[1] + frac[2] + frac[3]
        if not occupied.any():
            continue
        dens = frac[1] * F32(rho_c) + frac[3] * F32(pannus_rho)
        tb = frac[2] > 0
        if tb.any():
            bv = an.texture_fraction(tex, u[tb], vv[tb], t[tb], mod_fn(u[tb], vv[tb], t[tb]), v)
            tb_rho = F32(marrow) + bv * F32(tex["tissue_mg_ha_cm3"] - marrow)
            dens[tb] += frac[2][tb] * tb_rho
        block = rho[c0:c1, j0:j1, i0:i1]
        block *= F32(1.0) - occupied
        block += dens
        if truth is not None:
            truth[c0:c1, j0:j1, i0:i1] |= ((lab == 1) | (lab == 2)).astype(np.uint8)
