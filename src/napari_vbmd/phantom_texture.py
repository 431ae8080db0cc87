"""Trabecular and low-frequency textures of the phantom: periodic noise tiles sampled per bone."""
from __future__ import annotations

import numpy as np

from . import phantom_pose


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
