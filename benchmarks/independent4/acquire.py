"""The scanner: beam-hardening cupping and streaks, attenuation-dependent (non-stationary) noise, a
two-component point spread (sharp core + broad glare tail, anisotropic in z), ring artefacts, and
the two-position mixing of a slice that moved during its acquisition."""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.transform import iradon, radon

from .interp import upsample

N_VIEWS = 48


def draw_motion(rng, grade: int, n: int, voxel: float) -> dict:
    """Per-slice rigid displacement (smooth) and, for grades 2-3, a second position mixed into bursts of slices.

    Amplitudes follow the visual grades of HR-pQCT motion (Pialat et al. 2012; Sode et al. 2011): grade 1
    a slight blur of edges (<0.15 mm), grade 2 visible streaks/doubled edges (0.15-0.35 mm, a second position
    in up to 30 % of a slice's views), grade 3 marked doubling (0.3-0.7 mm, up to half the views).
    """
    amp = [0.0, rng.uniform(0.04, 0.15), rng.uniform(0.15, 0.35), rng.uniform(0.3, 0.7)][grade]
    rot = [0.0, rng.uniform(0.1, 0.3), rng.uniform(0.3, 0.6), rng.uniform(0.6, 1.2)][grade]
    s = np.arange(n)
    shift = np.zeros((n, 2))
    rdeg = np.zeros(n)
    if grade:
        for c in range(2):
            for _ in range(3):
                period = rng.uniform(20, 90) * 0.082 / voxel
                shift[:, c] += rng.normal(0, amp / 1.7) * np.sin(2 * np.pi * s / period + rng.uniform(0, 2 * np.pi))
        for _ in range(2):
            rdeg += rng.normal(0, rot / 1.4) * np.sin(2 * np.pi * s / (rng.uniform(30, 100) * 0.082 / voxel)
                                                     + rng.uniform(0, 2 * np.pi))
    weight = np.zeros(n)
    ghost = np.zeros((n, 2))
    if grade >= 2:
        wmax = rng.uniform(0.15, 0.3) if grade == 2 else rng.uniform(0.3, 0.5)
        dist = rng.uniform(0.2, 0.5) if grade == 2 else rng.uniform(0.4, 1.0)
        for _ in range(int(rng.integers(1, 4))):  # bursts of movement
            centre, width = rng.uniform(0, n), rng.uniform(0.1, 0.3) * n
            weight = np.maximum(weight, wmax * np.exp(-0.5 * ((s - centre) / (width / 2)) ** 2))
        ang = rng.uniform(0, 2 * np.pi) + 0.3 * np.sin(2 * np.pi * s / max(n, 1))
        ghost = dist * np.stack([np.sin(ang), np.cos(ang)], 1)
    return {"shift_mm": shift, "rot_deg": rdeg, "ghost_weight": weight, "ghost_mm": ghost, "amplitude_mm": amp,
            "rotation_deg": rot}


def mix_ghosts(ideal: np.ndarray, motion: dict, voxel: float) -> None:
    """In place: each slice = (1 - w) x itself + w x itself at the second position."""
    for k in np.nonzero(motion["ghost_weight"] > 0.01)[0]:
        w = motion["ghost_weight"][k]
        moved = ndimage.shift(ideal[k], motion["ghost_mm"][k] / voxel, order=1, mode="nearest")
        ideal[k] = (1 - w) * ideal[k] + w * moved


def _down(a, f):
    ny, nx = (a.shape[0] // f) * f, (a.shape[1] // f) * f
    return a[:ny, :nx].reshape(ny // f, f, nx // f, f).mean(axis=(1, 3))


def attenuation_maps(ideal, voxel, air, every_mm=0.7, pixel_mm=0.45):
    """Beam-hardening error image and relative noise variance, on a coarse grid of some slices.

    Per sampled slice: attenuation mu (1/cm) from density (mu = (rho + 356) / 1441, the XtremeCT
    calibration inverted; air 0), its parallel projections p(theta, s) and the projections of
    bone mineral alone, b(theta, s) (g/cm2). The error of an uncorrected polychromatic beam grows as
    b^2; its filtered back-projection gives cupping inside thick bone and dark streaks along the
    lines joining dense cortices. The noise variance of a filtered back-projection at a point is
    proportional to the mean over views of exp(p) along the rays through it (fewer photons behind
    more material): the unfiltered back-projection of exp(p).
    """
    nz = ideal.shape[0]
    f = max(1, int(round(pixel_mm / voxel)))
    zs = sorted(set(np.linspace(0, nz - 1, max(2, int(np.ceil(nz * voxel / every_mm)) + 1)).round().astype(int)))
    theta = np.linspace(0.0, 180.0, N_VIEWS, endpoint=False)
    bh, var, dens = [], [], []
    for k in zs:
        sl = _down(ideal[k], f)
        dens.append(sl.astype(np.float32))
        n = max(sl.shape)
        pad = np.full((n, n), air, np.float32)
        pad[:sl.shape[0], :sl.shape[1]] = sl
        mu = np.maximum(pad + 356.0, 0.0) / 1441.0
        bone = np.maximum(pad - 150.0, 0.0) / 1000.0
        step_cm = f * voxel / 10.0
        p = radon(mu, theta, circle=False) * step_cm
        b = radon(bone, theta, circle=False) * step_cm
        e = iradon(-(b ** 2), theta, filter_name="ramp", circle=False, output_size=n)
        w = iradon(np.exp(np.minimum(p, 30.0)), theta, filter_name=None, circle=False, output_size=n)
        bh.append(e[:sl.shape[0], :sl.shape[1]].astype(np.float32))
        var.append(w[:sl.shape[0], :sl.shape[1]].astype(np.float32))
    return {"z": np.array(zs), "factor": f, "bh": np.stack(bh), "var": np.stack(var), "dens": np.stack(dens)}


def map_slice(maps, key, k, shape):
    """The coarse map interpolated to slice k (linear in z) at full resolution (linear in-plane)."""
    z = maps["z"]
    j = int(np.clip(np.searchsorted(z, k), 1, len(z) - 1))
    w = (k - z[j - 1]) / max(z[j] - z[j - 1], 1)
    coarse = (1 - w) * maps[key][j - 1] + w * maps[key][j]
    f = maps["factor"]
    ny, nx = shape
    return upsample(coarse, (np.arange(ny) + 0.5) / f - 0.5, (np.arange(nx) + 0.5) / f - 0.5)


def broad_blur(a: np.ndarray, sigma_vox: float, f: int = 4) -> np.ndarray:
    """In-plane Gaussian of sigma_vox applied on a 1/f grid (the tail is smooth), back to full size."""
    nz, ny, nx = a.shape
    my, mx = ny // f, nx // f  # the last (< f) rows and columns are extrapolated from their neighbours
    small = np.empty((nz, my, mx), np.float32)
    for k in range(nz):
        small[k] = a[k, :my * f, :mx * f].reshape(my, f, mx, f).mean(axis=(1, 3))
    small = ndimage.gaussian_filter(small, (0, sigma_vox / f, sigma_vox / f), mode="nearest")
    return upsample(small, (np.arange(ny) + 0.5) / f - 0.5, (np.arange(nx) + 0.5) / f - 0.5)


def psf(ideal: np.ndarray, voxel: float, p: dict) -> np.ndarray:
    """(1 - w) core Gaussian (sigma_z != sigma_xy) + w broad in-plane tail: a heavier-tailed MTF."""
    core = ndimage.gaussian_filter(ideal, (p["psf_sigma_z_mm"] / voxel, p["psf_sigma_xy_mm"] / voxel,
                                           p["psf_sigma_xy_mm"] / voxel), mode="nearest", truncate=3.5)
    core *= 1.0 - p["psf_tail_weight"]
    for k0 in range(0, ideal.shape[0], 16):  # the tail is in-plane: slab by slab, to keep memory low
        core[k0:k0 + 16] += p["psf_tail_weight"] * broad_blur(ideal[k0:k0 + 16], p["psf_tail_sigma_mm"] / voxel)
    return core


def rings(shape, centre_yx, voxel, rng, p: dict):
    """Faint concentric rings about the scanner's rotation axis (miscalibrated detector channels)."""
    ny, nx = shape
    if not p["rings"]:
        return None
    yy, xx = np.meshgrid(np.arange(ny) - centre_yx[0], np.arange(nx) - centre_yx[1], indexing="ij")
    r = np.sqrt(yy ** 2 + xx ** 2) * voxel
    out = np.zeros(shape, np.float32)
    for radius, amp in zip(p["ring_radii_mm"], p["ring_amplitudes"]):
        out += amp * np.exp(-0.5 * ((r - radius) / (0.7 * voxel)) ** 2)
    return out


def _noise_slab(seed_keys, k0, k1, ny, nx, p, halo=4):
    """Filtered noise of slices k0..k1; slice k's white noise comes from its own stream, so a slab
    (with ``halo`` slices each side for the z correlation) is the same whatever the slab size."""
    n = k1 - k0
    ks = range(k0 - halo, k1 + halo)
    w = np.empty((len(ks), ny, nx), np.float32)
    for i, k in enumerate(ks):
        w[i] = np.random.default_rng(np.random.SeedSequence([*seed_keys, k + 1000])).standard_normal((ny, nx),
                                                                                                   dtype=np.float32)
    f = ndimage.gaussian_filter(w, (p["noise_corr_z_vox"], p["noise_corr_xy_vox"], p["noise_corr_xy_vox"]),
                                mode="wrap")[halo:halo + n]
    del w
    f -= p["noise_lowcut"] * broad_blur(f, 3.0 * p["noise_corr_xy_vox"], f=2)
    return f


def correlated_noise(seed_keys, k0, k1, ny, nx, p: dict) -> np.ndarray:
    """Unit-SD noise with the texture of a filtered back-projection: a Gaussian-correlated core minus
    a share of its broad component (the ramp filter's suppression of low frequencies). The unit is
    fixed on a 24 x 192 x 192 reference block of the same process."""
    ref = _noise_slab([*seed_keys, 999], 0, 24, 192, 192, p)
    return _noise_slab(seed_keys, k0, k1, ny, nx, p) / float(ref[4:-4, 16:-16, 16:-16].std())
