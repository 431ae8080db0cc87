"""Rendering a phantom's noise-free design slab by slab (``_Renderer``) on its grid (``_Grid``), and the sums
over MC2 that set the trabecular fraction for the D100 target. See phantom.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from . import phantom_pose
from .phantom_anatomy import FAT, MUSCLE, SKIN, SYNOVIUM, TENDON, _Anatomy, _Metacarpal, _soft
from .phantom_spec import SCANNER_CALIBRATIONS, PhantomSpec
from .phantom_texture import _Textures


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
