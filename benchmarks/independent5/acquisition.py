"""The scan: motion (a rigid trajectory over the views, its displacement varying along z, with ghosts
and single-view ramp-filtered streaks), a shift-variant Gaussian PSF (wider away from the rotation
centre), noise synthesised per slice from a ramp x window power spectrum, correlated across slices and
scaled by a photon-variance map from line integrals of the whole hand, then quantisation."""
from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

F32 = np.float32

#: Scanco calibrations (from the processing logs of the real AIM files in ../shared/data/scanco)
CALIBRATIONS = {
    "xtremect1": {"density_slope": 1441.13599, "density_intercept": -356.445007, "mu_scaling": 8192.0,
                  "mu_water": 0.2464, "fov_mm": 126.0},
    "xtremect2": {"density_slope": 1632.71997, "density_intercept": -396.135986, "mu_scaling": 8192.0,
                  "mu_water": 0.2402, "fov_mm": 140.0},
}
N_VIEWS = 750


def draw_acquisition(rng, spec) -> dict:
    """Acquisition parameters (all drawn whatever the grade, so grades do not shift other draws)."""
    xt2 = spec.scanner == "xtremect2"
    sigma0 = float(rng.uniform(0.045, 0.06) if xt2 else rng.uniform(0.055, 0.075))
    g = spec.motion_grade
    trans = [0.0, 0.12, 0.3, 0.6][g]
    rot = [0.0, 0.006, 0.015, 0.03][g]
    moves = []
    for k in range(3):
        ang = rng.uniform(0, 2 * np.pi)
        moves.append({"weight": float(rng.uniform(0.12, 0.22)),
                      "shift_mm": [float(trans * rng.uniform(0.6, 1.2) * np.cos(ang)),
                                   float(trans * rng.uniform(0.6, 1.2) * np.sin(ang))],
                      "rot_mm_per_mm": [float(rot * rng.uniform(-1, 1)), float(rot * rng.uniform(-1, 1))],
                      "view_deg": float(rng.uniform(0, 180))})
    return {
        "psf_sigma_centre_mm": sigma0,
        "psf_edge_factor": float(rng.uniform(1.3, 1.7)),
        "psf_sigma_z_factor": float(rng.uniform(1.0, 1.3)),
        "noise_sd_target": float(rng.uniform(30.0, 115.0)),
        "nps_cut_fraction": float(rng.uniform(0.7, 0.95)),
        "nps_floor": float(rng.uniform(0.03, 0.12)),
        "noise_z_corr": float(rng.uniform(0.15, 0.45)),
        "motion_moves": moves[:g],
        "motion_pivot_mm": float(rng.uniform(-30, -10)),
        "streak_gain": [0.0, 0.6, 1.0, 1.5][g] * float(rng.uniform(0.7, 1.3)),
    }


def variance_map(att_density: np.ndarray, coarse_mm: float, intercept: float, slope: float,
                 n_angles: int = 36) -> np.ndarray:
    """Relative noise variance at each pixel of a coarse slice: the mean over views of exp(line integral)
    through it (photon counts fall as exp(-integral); a pixel's variance sums 1 / counts over views)."""
    mu = np.maximum((att_density - intercept) / slope, 0.0) * (coarse_mm / 10.0)  # 1/cm x cm per pixel
    ny, nx = mu.shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    yy -= (ny - 1) / 2
    xx -= (nx - 1) / 2
    nb = int(np.ceil(np.hypot(ny, nx))) + 2
    out = np.zeros_like(mu)
    for th in np.linspace(0, np.pi, n_angles, endpoint=False):
        s = np.floor(xx * np.cos(th) + yy * np.sin(th) + nb / 2).astype(int)
        p = np.bincount(s.ravel(), weights=mu.ravel(), minlength=nb)
        out += np.exp(p[s])
    return out / n_angles


def nps_filter(ny, nx, voxel, cut_fraction, floor) -> np.ndarray:
    """sqrt of a filtered-back-projection noise power spectrum (ramp x Hann window), unit output variance."""
    fy = np.fft.fftfreq(ny, voxel)[:, None]
    fx = np.fft.fftfreq(nx, voxel)[None, :]
    f = np.sqrt(fy * fy + fx * fx)
    f_cut = cut_fraction * 0.5 / voxel
    win = np.where(f < f_cut, 0.5 * (1 + np.cos(np.pi * f / f_cut)), 0.0)
    nps = (f + floor * f_cut) * win ** 2
    nps /= nps.mean()
    return np.sqrt(nps[:, : nx // 2 + 1]).astype(F32)


def _streak(delta, theta, cols, rows, voxel):
    """One view's inconsistency back-projected: ramp-filtered projection of ``delta`` smeared along its rays."""
    s = cols * np.cos(theta) + rows * np.sin(theta)
    s0 = s.min()
    b = np.floor(s - s0).astype(np.int32)
    n = int(b.max()) + 1
    p = np.bincount(b.ravel(), weights=delta.ravel(), minlength=n) * voxel
    m = 1 << int(np.ceil(np.log2(2 * n)))
    q = np.fft.irfft(np.fft.rfft(p, m) * np.fft.rfftfreq(m, voxel), m)[:n]
    return (q[b] * (np.pi / N_VIEWS)).astype(F32)


def acquire(rho, acq, spec, fov_offset_vox, calibration, rng, fat_masks, var_coarse):
    """int16 native voxels of the scan of density volume ``rho`` (consumed), and the noise SD in fat.

    ``var_coarse`` = (coarse variance map over the FOV, its pixel size in mm); ``fov_offset_vox`` = (iy0, ix0,
    n_fov) places the field in the scanner's field of view."""
    nz, ny, nx = rho.shape
    v = spec.voxel_mm
    iy0, ix0, n_fov = fov_offset_vox
    centre = (n_fov - 1) / 2.0
    rows = (np.arange(ny, dtype=F32) + F32(iy0 - centre))[:, None]
    cols = (np.arange(nx, dtype=F32) + F32(ix0 - centre))[None, :]
    r_mm = np.sqrt(rows * rows + cols * cols) * F32(v)
    radius = 0.5 * n_fov * v
    w_edge = np.clip((r_mm / F32(radius)) ** 2, 0, 1).astype(F32)
    s0 = acq["psf_sigma_centre_mm"]
    s1 = s0 * acq["psf_edge_factor"]
    # slice profile first (in x-slabs, in place: memory stays one volume)
    sz = s0 * acq["psf_sigma_z_factor"] / v
    for i in range(0, nx, 128):
        rho[:, :, i:i + 128] = ndimage.gaussian_filter1d(rho[:, :, i:i + 128], sz, axis=0, mode="nearest")
    # noise: per-slice spectrum, variance map, slice-to-slice correlation
    vmap, coarse = var_coarse
    scale = coarse / v
    vy = (np.arange(ny) + iy0) / scale
    vx = (np.arange(nx) + ix0) / scale
    var = ndimage.map_coordinates(vmap, np.meshgrid(vy, vx, indexing="ij"), order=1, mode="nearest")
    fat_all = np.zeros((ny, nx), dtype=bool)
    for m in fat_masks.values():
        fat_all |= m
    ref = np.median(var[fat_all]) if fat_all.any() else np.median(var)
    sd_map = (F32(acq["noise_sd_target"]) * np.sqrt(var / ref)).astype(F32)
    filt = nps_filter(ny, nx, v, acq["nps_cut_fraction"], acq["nps_floor"])
    c = acq["noise_z_corr"]
    norm = F32(1.0 / np.sqrt(1 + 2 * c * c))

    def white():
        w = rng.standard_normal((ny, nx), dtype=F32)
        return sfft.irfft2(sfft.rfft2(w) * filt, s=(ny, nx)).astype(F32)

    prev, cur, nxt = white(), white(), white()
    per_native = calibration["mu_scaling"] / calibration["density_slope"]
    intercept = calibration["density_intercept"]
    out = np.empty(rho.shape, dtype=np.int16)
    moves = acq["motion_moves"]
    fat_vals = []
    for k in range(nz):
        img = rho[k]
        if moves:
            z_rel = k * v - acq["motion_pivot_mm"]
            keep = 1.0 - sum(m["weight"] for m in moves)
            acc = img * F32(keep)
            before = img
            streak = np.zeros_like(img)
            for m in moves:
                dx = m["shift_mm"][0] + m["rot_mm_per_mm"][0] * z_rel
                dy = m["shift_mm"][1] + m["rot_mm_per_mm"][1] * z_rel
                moved = ndimage.shift(img, (dy / v, dx / v), order=1, mode="nearest")
                acc += F32(m["weight"]) * moved
                delta = moved - before
                streak += _streak(delta, np.deg2rad(m["view_deg"]), cols, rows, v)
                before = moved
            img = acc + F32(acq["streak_gain"]) * streak
        a = ndimage.gaussian_filter(img, s0 / v, mode="nearest")
        b = ndimage.gaussian_filter(img, s1 / v, mode="nearest")
        img = a + w_edge * (b - a)
        noise = (F32(c) * prev + cur + F32(c) * nxt) * norm
        img = img + noise * sd_map
        out[k] = np.clip(np.rint((img - F32(intercept)) * F32(per_native)), -32768, 32767).astype(np.int16)
        if k in fat_masks:  # measured in the written values
            fat_vals.append(out[k][fat_masks[k]].astype(np.float64) / per_native + intercept)
        prev, cur, nxt = cur, nxt, white()
    fat_sd = float(np.std(np.concatenate(fat_vals))) if fat_vals else float("nan")
    return out, fat_sd
