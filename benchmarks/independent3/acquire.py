"""Acquisition of one stack: parallel-beam projections of every slice, photon noise, detector blur,
per-view object motion, filtered back-projection.

The projector is pixel-driven with linear interpolation onto detector bins one pixel wide; the
back-projector is its exact transpose (the textbook FBP back-projector). Both act on all slices of
the stack at once (a sparse matrix times a (pixels x slices) array), in chunks of views so memory
stays bounded. Units: attenuation per pixel length in, attenuation per pixel length out.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse


class Geometry:
    """Views over 180 degrees and a detector wide enough for the (ny, nx) rectangle's diagonal."""

    def __init__(self, ny: int, nx: int, n_views: int, chunk: int = 24):
        self.ny, self.nx, self.n_views = ny, nx, n_views
        self.n_det = int(np.ceil(np.hypot(ny, nx))) + 4
        self.angles = np.arange(n_views) * np.pi / n_views
        self.chunk = chunk
        yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
        self._x = (xx - (nx - 1) / 2).ravel()
        self._y = (yy - (ny - 1) / 2).ravel()
        self._mats: dict[int, sparse.csc_matrix] = {}

    def _matrix(self, start: int) -> sparse.csc_matrix:
        """Rows (view, bin) of views [start, start + chunk), columns pixels; 2 entries per pixel and view."""
        views = np.arange(start, min(start + self.chunk, self.n_views))
        nv, npix = views.size, self._x.size
        cos, sin = np.cos(self.angles[views]).astype(np.float32), np.sin(self.angles[views]).astype(np.float32)
        u = self._x[:, None] * cos[None, :] + self._y[:, None] * sin[None, :] + (self.n_det - 1) / 2  # (npix, nv)
        i0 = np.floor(u).astype(np.int32)
        w = (u - i0).astype(np.float32)
        rows = np.empty((npix, nv, 2), np.int32)
        rows[..., 0] = np.arange(nv, dtype=np.int32)[None, :] * self.n_det + i0
        rows[..., 1] = rows[..., 0] + 1
        vals = np.empty((npix, nv, 2), np.float32)
        vals[..., 0] = 1 - w
        vals[..., 1] = w
        indptr = np.arange(0, npix * nv * 2 + 1, nv * 2, dtype=np.int64)
        return sparse.csc_matrix((vals.ravel(), rows.ravel(), indptr), shape=(nv * self.n_det, npix))

    def chunks(self):
        for start in range(0, self.n_views, self.chunk):
            yield start, self._matrix(start)

    def project(self, stack: np.ndarray) -> np.ndarray:
        """(nz, ny, nx) -> sinogram (n_views, n_det, nz)."""
        nz = stack.shape[0]
        columns = np.ascontiguousarray(stack.reshape(nz, -1).T, dtype=np.float32)  # (npix, nz)
        out = np.empty((self.n_views, self.n_det, nz), np.float32)
        for start, mat in self.chunks():
            block = mat @ columns
            out[start:start + block.shape[0] // self.n_det] = block.reshape(-1, self.n_det, nz)
        return out

    def backproject(self, sino: np.ndarray) -> np.ndarray:
        """Transpose of ``project``: (n_views, n_det, nz) -> (nz, ny, nx)."""
        nz = sino.shape[2]
        acc = np.zeros((self.nx * self.ny, nz), np.float32)
        for start, mat in self.chunks():
            nv = mat.shape[0] // self.n_det
            acc += mat.T @ np.ascontiguousarray(sino[start:start + nv].reshape(-1, nz))
        return acc.T.reshape(nz, self.ny, self.nx)


def ramp_filter(sino: np.ndarray, window: str, cutoff: float) -> np.ndarray:
    """Ramp filter along the detector (axis 1) from the band-limited spatial ramp (no DC offset),
    times an apodising window: "hann" or "shepp-logan", scaled to ``cutoff`` of Nyquist."""
    n_det = sino.shape[1]
    size = int(2 ** np.ceil(np.log2(2 * n_det)))
    n = np.concatenate((np.arange(1, size // 2 + 1, 2), np.arange(size // 2 - 1, 0, -2)))
    h = np.zeros(size)
    h[0] = 0.25
    h[1::2] = -1 / (np.pi * n) ** 2
    ramp = 2 * np.real(np.fft.fft(h))
    f = np.abs(np.fft.fftfreq(size))  # cycles per pixel, Nyquist 0.5
    x = np.clip(f / (0.5 * cutoff), 0, None)
    if window == "hann":
        win = np.where(x < 1, 0.5 + 0.5 * np.cos(np.pi * x), 0.0)
    elif window == "shepp-logan":
        win = np.where(x < 1, np.sinc(x / 2), 0.0)
    else:
        raise ValueError(window)
    filt = (ramp * win).astype(np.float32)
    spec = np.fft.rfft(sino, n=size, axis=1)
    spec *= filt[: size // 2 + 1][None, :, None]
    return np.fft.irfft(spec, n=size, axis=1)[:, :n_det].astype(np.float32)


def fbp(geom: Geometry, sino: np.ndarray, window: str, cutoff: float) -> np.ndarray:
    return geom.backproject(ramp_filter(sino, window, cutoff)) * np.float32(np.pi / (2 * geom.n_views))


def detector_blur(sino: np.ndarray, sigma_px: float) -> np.ndarray:
    return ndimage.gaussian_filter1d(sino, sigma_px, axis=1, mode="nearest") if sigma_px > 0 else sino


def shift_views(sino: np.ndarray, angles: np.ndarray, dy_px: np.ndarray, dx_px: np.ndarray) -> np.ndarray:
    """Move the object by (dy, dx) pixels during view v: its projection moves by dx cos + dy sin."""
    out = np.empty_like(sino)
    s = dx_px * np.cos(angles) + dy_px * np.sin(angles)
    for v in range(sino.shape[0]):
        if abs(s[v]) < 1e-6:
            out[v] = sino[v]
        else:
            out[v] = ndimage.shift(sino[v], (s[v], 0), order=1, mode="nearest")
    return out


def draw_motion(rng, grade: int, n_views: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Object displacement (dy, dx) in mm at each view, re-centred on its per-axis median (where
    most views see the object, which is where the truth is), and what was drawn."""
    s = np.arange(n_views) / n_views
    dy, dx = np.zeros(n_views), np.zeros(n_views)
    info = {"grade": int(grade), "jumps": []}
    if grade <= 0:
        return dy, dx, info
    drift = {1: (0.03, 0.08), 2: (0.08, 0.2), 3: (0.15, 0.35)}[min(grade, 3)]
    for arr in (dy, dx):
        for _ in range(2):
            arr += rng.uniform(*drift) / 2 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * s + rng.uniform(0, 2 * np.pi))
    tremor = {1: 0.01, 2: 0.02, 3: rng.uniform(0.03, 0.06)}[min(grade, 3)]
    f = rng.uniform(8, 20)
    dy += tremor * np.sin(2 * np.pi * f * s + rng.uniform(0, 6.3))
    dx += tremor * np.sin(2 * np.pi * f * s + rng.uniform(0, 6.3))
    n_jumps = {1: 0, 2: 1, 3: int(rng.integers(1, 3))}[min(grade, 3)]
    for _ in range(n_jumps):
        size = rng.uniform(0.1, 0.3) if grade == 2 else rng.uniform(0.3, 0.8)
        ang = rng.uniform(0, 2 * np.pi)
        at = rng.uniform(0.15, 0.85)
        step = 1 / (1 + np.exp(-(s - at) / 0.005))
        dy += size * np.sin(ang) * step
        dx += size * np.cos(ang) * step
        info["jumps"].append({"at_fraction": float(at), "mm": float(size), "direction_deg": float(np.rad2deg(ang))})
    dy -= np.median(dy)
    dx -= np.median(dx)
    info.update(drift_mm=[float(d) for d in drift], tremor_mm=float(tremor), max_displacement_mm=float(np.hypot(dy, dx).max()),
                rms_displacement_mm=float(np.sqrt(np.mean(dy ** 2 + dx ** 2))))
    return dy, dx, info


def acquire(mu_px: np.ndarray, n_views: int, motion_px, det_sigma_px: float, window: str, cutoff: float,
            extra_p, rng, noise_scale: float | None = None):
    """Reconstructions of the clean and of the unit-photon-count noise data, slice stack at once.

    ``mu_px``: attenuation per pixel length (nz, ny, nx). Per chunk of views: project, move the
    object (per-view shifts), detector blur, Gaussian photon noise of variance exp(p)/I0 with I0 = 1
    (``extra_p(angles)`` adds the attenuation of tissue outside the reconstructed block), ramp
    filter with window, back-project. Without ``noise_scale`` returns the clean and the noise
    reconstructions (the caller measures the noise to choose I0); with it, one reconstruction of the
    data with the noise times ``noise_scale`` (I0 = 1 / noise_scale**2).
    """
    nz, ny, nx = mu_px.shape
    geom = Geometry(ny, nx, n_views)
    columns = np.ascontiguousarray(mu_px.reshape(nz, -1).T, dtype=np.float32)
    ncol = nz if noise_scale is not None else 2 * nz
    acc = np.zeros((nx * ny, ncol), np.float32)
    dy, dx = motion_px
    scale = np.float32(np.pi / (2 * n_views))
    for start, mat in geom.chunks():
        nv = mat.shape[0] // geom.n_det
        views = np.arange(start, start + nv)
        p = (mat @ columns).reshape(nv, geom.n_det, nz)
        if np.any(dy[views] != 0) or np.any(dx[views] != 0):
            p = shift_views(p, geom.angles[views], dy[views], dx[views])
        p = detector_blur(p, det_sigma_px)
        total = p + (extra_p(geom.angles[views])[:, None, None] if extra_p is not None else 0)
        noise = rng.standard_normal(p.shape, dtype=np.float32) * np.sqrt(np.exp(np.minimum(total, 30)))
        if noise_scale is not None:
            both = ramp_filter(p + np.float32(noise_scale) * noise, window, cutoff)
        else:
            both = np.concatenate([ramp_filter(p, window, cutoff), ramp_filter(noise, window, cutoff)], axis=2)
        acc += mat.T @ np.ascontiguousarray(both.reshape(-1, ncol))
    if noise_scale is not None:
        return (acc.T * scale).reshape(nz, ny, nx)
    out = (acc.T * scale).reshape(2, nz, ny, nx)
    return out[0], out[1]
