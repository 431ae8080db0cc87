"""Voxelisation: each voxel centre is mapped into the hand's frame (pose, per-slice motion, free-form
warp) and the solids are sampled there; voxels near a surface are re-sampled at 3 x 3 x 3 sub-voxel
points, so the ideal image holds true partial-volume fractions. The truth is MC2's solid at the
voxel centres, minus the erosion pits."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .anatomy import Bone, Hand, smoothstep
from .interp import upsample
from .network import PITCH

STRIDE = 4  # the free-form warp (smooth over millimetres) is evaluated every STRIDE voxels in-plane

SUB = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)], float) / 3.0


def rotation(theta_deg, tilt_y_deg, tilt_x_deg) -> np.ndarray:
    """3 x 3 (z, y, x) rotation: in-plane by theta about z, then tilts of the long axis towards y and x."""
    t, a, b = np.deg2rad([theta_deg, tilt_y_deg, tilt_x_deg])
    rz = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    ry = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])  # z-y plane
    rx = np.array([[np.cos(b), 0, -np.sin(b)], [0, 1, 0], [np.sin(b), 0, np.cos(b)]])  # z-x plane
    return rz @ ry @ rx


class Geometry:
    """Per slice s: q_local = A[s] @ p + b[s] (p: field mm of a voxel centre, q: local hand mm)."""

    def __init__(self, n_slices, voxel, shape, centre, rot, shift, motion_shift, motion_rot_deg, z_mid):
        self.v = voxel
        self.shape = shape
        self.A = np.zeros((n_slices, 3, 3))
        self.b = np.zeros((n_slices, 3))
        for s in range(n_slices):
            r = rotation(motion_rot_deg[s], 0.0, 0.0) @ rot
            t = np.asarray(centre) + np.asarray(shift) + np.array([0.0, *motion_shift[s]])
            self.A[s] = r.T
            self.b[s] = -r.T @ t + np.array([z_mid, 0.0, 0.0])

    def local(self, k0, k1, i0, i1, j0, j1, step=1):
        """Local coordinates of voxel centres [k0:k1, i0:i1:step, j0:j1:step] (float32 arrays)."""
        v = self.v
        ii = np.arange(i0, i1, step) * v
        jj = np.arange(j0, j1, step) * v
        out = [np.empty((k1 - k0, len(ii), len(jj)), np.float32) for _ in range(3)]
        for n, k in enumerate(range(k0, k1)):
            A, b = self.A[k], self.b[k]
            for c in range(3):
                out[c][n] = (A[c, 0] * k * v + b[c]) + A[c, 1] * ii[:, None] + A[c, 2] * jj[None, :]
        return out

    def field_box(self, k0, k1, lo, hi, pad):
        """Field index box (i0, i1, j0, j1) that holds the local box [lo, hi] for slices k0..k1, or None."""
        corners = np.array([[z, y, x] for z in (lo[0], hi[0]) for y in (lo[1], hi[1]) for x in (lo[2], hi[2])])
        pts = []
        for k in (k0, (k0 + k1) // 2, k1 - 1):
            A, b = self.A[k], self.b[k]
            pts.append((corners - b) @ np.linalg.inv(A).T)
        pts = np.concatenate(pts)
        z_lo, z_hi = pts[:, 0].min() - pad, pts[:, 0].max() + pad
        if z_hi < k0 * self.v or z_lo > (k1 - 1) * self.v:
            return None
        i0 = max(0, int(np.floor((pts[:, 1].min() - pad) / self.v)))
        i1 = min(self.shape[1], int(np.ceil((pts[:, 1].max() + pad) / self.v)) + 1)
        j0 = max(0, int(np.floor((pts[:, 2].min() - pad) / self.v)))
        j1 = min(self.shape[2], int(np.ceil((pts[:, 2].max() + pad) / self.v)) + 1)
        if i1 - i0 < 2 or j1 - j0 < 2:
            return None
        return i0, i1, j0, j1


def _phi(rho, v):
    """First-order distance to rho = 1 (mm, positive inside) and |grad rho| per mm."""
    axes = [a for a in range(3) if rho.shape[a] > 1]
    grads = np.gradient(rho, v, axis=axes) if len(axes) > 1 else [np.gradient(rho, v, axis=axes[0])]
    g = np.sqrt(sum(gr.astype(np.float32) ** 2 for gr in grads))
    g = np.maximum(g, 0.02)
    return (1.0 - rho) / g, g


def cortex_thickness(bone: Bone, qz):
    return bone.cortex_head + (bone.cortex_shaft - bone.cortex_head) * smoothstep((qz - bone.neck_z + 3.0) / 6.0)


def _pit_rho(pits, qz, qy, qx):
    r = None
    for c, s in pits:
        rr = np.sqrt(((qz - c[0]) / s[0]) ** 2 + ((qy - c[1]) / s[1]) ** 2 + ((qx - c[2]) / s[2]) ** 2)
        r = rr if r is None else np.minimum(r, rr)
    return r


def warped(hand: Hand, geo: Geometry, k0, k1, i0, i1, j0, j1, step=1):
    """Local coordinates after the free-form warp; the warp's displacement is computed on a grid of
    STRIDE x step voxels in-plane and interpolated linearly (it varies over millimetres)."""
    q = geo.local(k0, k1, i0, i1, j0, j1, step)
    s = STRIDE * step
    ci1, cj1 = i0 + ((i1 - 1 - i0) // s + 2) * s, j0 + ((j1 - 1 - j0) // s + 2) * s
    qc = geo.local(k0, k1, i0, ci1, j0, cj1, s)
    dc = hand.ffd.displacement(*qc)
    py = np.arange(q[0].shape[1]) * step / s
    px = np.arange(q[0].shape[2]) * step / s
    return [q[c] + upsample(dc[c], py, px) for c in range(3)]


def cull(blobs, q, reach=2.5):
    """The blobs that can matter in the box spanned by q (farther than ``reach`` radii everywhere: dropped)."""
    lo = np.array([float(a.min()) for a in q])
    hi = np.array([float(a.max()) for a in q])
    keep = np.all((blobs.centres + reach * blobs.semi >= lo) & (blobs.centres - reach * blobs.semi <= hi), axis=1)
    if not keep.any():
        keep[np.argmin(np.linalg.norm((blobs.centres - (lo + hi) / 2) / blobs.semi, axis=1))] = True
    return type(blobs)(blobs.centres[keep], blobs.semi[keep], blobs.k)


class Texture:
    """A smoothed occupancy grid sampled trilinearly (the box smoothing makes it a voxel's volume fraction)."""

    def __init__(self, occ, lo, voxel, wrap=False, anchor=(0.0, 0.0, 0.0)):
        size = max(1, int(round(voxel / PITCH)))
        self.grid = ndimage.uniform_filter(occ.astype(np.float32), size, mode="wrap" if wrap else "constant")
        self.lo = np.asarray(lo, float)
        self.wrap = wrap
        self.anchor = np.asarray(anchor, float)

    def sample(self, qz, qy, qx, anchor=(0.0, 0.0, 0.0)):
        coords = [(q - self.lo[c] - anchor[c]) / PITCH for c, q in enumerate((qz, qy, qx))]
        return ndimage.map_coordinates(self.grid, coords, order=1, mode="grid-wrap" if self.wrap else "constant",
                                       cval=0.0)


def soft_tissue(hand: Hand, geo: Geometry, k0, k1, tissue: dict, air: float):
    """Soft tissue of slices k0..k1 at half resolution in-plane, interpolated to full resolution."""
    ny, nx = geo.shape[1], geo.shape[2]
    hy, hx = ny // 2 + 1, nx // 2 + 1
    qz, qy, qx = warped(hand, geo, k0, k1, 0, 2 * hy - 1, 0, 2 * hx - 1, 2)
    rho = hand.skin.rho(qz, qy, qx)
    # distance to the skin: in-plane gradient only (the outline runs along the axis)
    gy, gx = np.gradient(rho, 2 * geo.v, axis=(1, 2))
    phi = (1.0 - rho) / np.maximum(np.sqrt(gy ** 2 + gx ** 2), 0.02)
    mix = ndimage.map_coordinates(tissue["mix_grid"], [(qq - tissue["mix_lo"][c]) / tissue["mix_step"]
                                                       for c, qq in enumerate((qz, qy, qx))], order=1, mode="nearest")
    deep = np.clip((phi - tissue["skin_mm"] - tissue["subcut_mm"]) / 1.5, 0.0, 1.0)
    val = tissue["fat"] + (tissue["muscle"] - tissue["fat"]) * np.clip(mix, 0.0, 1.0) * deep
    val = np.where(phi < tissue["skin_mm"], tissue["skin"], val)
    for t in hand.tendons:
        r = ((qy - t.y - t.slope[0] * qz) / t.sy) ** 2 + ((qx - t.x - t.slope[1] * qz) / t.sx) ** 2
        val = np.where(r <= 1.0, tissue["tendon"], val)
    # the skin's edge with partial volume at this resolution (a clipped linear ramp over one half-res pixel)
    inside = np.clip(0.5 + phi / (2 * geo.v), 0.0, 1.0)
    val = air + (val - air) * inside
    return upsample(val.astype(np.float32), np.arange(ny) / 2.0, np.arange(nx) / 2.0)


def render_bone(bone: Bone, hand: Hand, geo: Geometry, k0, k1, box, val, textures, cartilage, pannus, truth=None):
    """Compose one bone into val[k0:k1] (a view of the chunk) inside the field index box."""
    i0, i1, j0, j1 = box
    v = geo.v
    q = warped(hand, geo, k0, k1, i0, i1, j0, j1)
    blobs = cull(bone.blobs, q)
    rho = blobs.rho(*q)
    phi, g = _phi(rho, v)
    mc = None
    if bone.cut_by:
        mc = next(b for b in hand.bones if b.name == bone.cut_by)
        mc_blobs = cull(mc.blobs, q)
        rho_mc = mc_blobs.rho(*q)
        phi_mc, g_mc = _phi(rho_mc, v)
        # the joint space: cartilage and fluid between the head and the phalanx's cup
        joint = (phi_mc <= 0) & (phi_mc > -bone.joint_gap) & (rho <= 1.0)
        sub = val[:, i0:i1, j0:j1]
        sub[joint] = cartilage
        phi = np.minimum(phi, -(phi_mc + bone.joint_gap))
    t = cortex_thickness(bone, q[0])
    pit_r = _pit_rho(bone.pits, *q) if bone.pits else None
    f_out = (phi > 0).astype(np.float32)
    f_in = (phi > t).astype(np.float32)
    f_pit = np.zeros_like(f_out)
    if pit_r is not None:
        in_pit = pit_r <= 1.0
        f_out[in_pit] = 0.0
        f_in[in_pit] = 0.0
        f_pit[in_pit] = 1.0
    if truth is not None:
        truth[:, i0:i1, j0:j1] |= f_out > 0.5 if pit_r is None else ((phi > 0) & (pit_r > 1.0))
    near = (np.abs(phi) < v) | (np.abs(phi - t) < v)
    if pit_r is not None:
        near |= pit_r < 1.0 + 1.2 * v / min(float(np.min(s)) for _, s in bone.pits)
    kk, ii, jj = np.nonzero(near)
    if kk.size:
        A = geo.A[k0 + kk]  # (n, 3, 3)
        off = np.einsum("nab,sb->nsa", A, SUB * v)  # (n, 27, 3) local offsets of the sub-samples
        qs = [q[c][kk, ii, jj][:, None] + off[:, :, c] for c in range(3)]
        rho_s = blobs.rho(*qs)
        phi_s = (1.0 - rho_s) / g[kk, ii, jj][:, None]
        if mc is not None:
            phi_mc_s = (1.0 - mc_blobs.rho(*qs)) / g_mc[kk, ii, jj][:, None]
            phi_s = np.minimum(phi_s, -(phi_mc_s + bone.joint_gap))
        t_s = t[kk, ii, jj][:, None]
        ok = np.ones_like(phi_s, bool)
        if pit_r is not None:
            pit_s = _pit_rho(bone.pits, *qs) <= 1.0
            ok = ~pit_s
            f_pit[kk, ii, jj] = pit_s.mean(axis=1)
        f_out[kk, ii, jj] = ((phi_s > 0) & ok).mean(axis=1)
        f_in[kk, ii, jj] = ((phi_s > t_s) & ok).mean(axis=1)
    interior = np.zeros_like(f_out)
    kk, ii, jj = np.nonzero(f_in > 0)
    if kk.size:
        tex = textures["mc2"] if bone.texture == "mc2" else textures["tile"]
        anchor = (0.0, 0.0, 0.0) if bone.texture == "mc2" else (bone.tip_z, *bone.axis_yx)
        occ = tex.sample(q[0][kk, ii, jj], q[1][kk, ii, jj], q[2][kk, ii, jj], anchor)
        interior[kk, ii, jj] = occ * bone.tissue_density + (1.0 - occ) * bone.marrow_density
    sub = val[:, i0:i1, j0:j1]
    sub *= 1.0 - f_out - f_pit
    sub += (f_out - f_in) * bone.cortex_density + f_in * interior + f_pit * pannus
    return {"f_in": f_in, "f_out": f_out}
