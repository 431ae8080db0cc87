"""What the scanner adds to a phantom's design: motion artefacts, correlated noise, and the AIM processing
log with the calibration. See phantom.py.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage, sparse

from .phantom_anatomy import _smoothstep
from .phantom_spec import SCANNER_NAMES, PhantomSpec
from .scan import Calibration

if TYPE_CHECKING:
    from .phantom_render import _Grid


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
