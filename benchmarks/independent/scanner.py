"""The scanner side of the independent family: calibration, point spread, noise, motion, quantisation.

Everything here is written for this family alone (see docs/independent-phantoms.md):

- point spread: a *two-Gaussian mixture* (a sharp core plus a weak wide tail, the shape of a CT
  line-spread function with scatter and reconstruction-kernel tails), slightly wider along z;
- noise: drawn in the Fourier domain of each slice from a noise power spectrum shaped like a
  filtered back-projection's (a ramp with a floor, rolled off by the apodisation window) plus a
  weak low-frequency mottle, then mixed between neighbouring slices with a 5-tap kernel;
- motion: rigid in-plane translation of the hand *during the rotation*, applied exactly in
  k-space (Fourier slice theorem: the view taken at angle phi fills the k-space line at phi, so a
  shift d at that moment multiplies that line by exp(-2 pi i k.d)); jerks give streaks tangent to
  the edges and doubled contours, tremor a fine blur.
"""
from __future__ import annotations

import functools

from dataclasses import asdict, dataclass

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

from napari_vbmd.scan import Calibration

#: Scanco's calibrations as the scanners' processing logs state them (../shared/data/scanco/README.md).
CALIBRATIONS = {
    "xtremect1": Calibration(density_slope=1441.13599, density_intercept=-356.445007, mu_scaling=8192.0,
                             mu_water=0.2464),
    "xtremect2": Calibration(density_slope=1632.71997, density_intercept=-396.135986, mu_scaling=8192.0,
                             mu_water=0.2402),
}
#: Slices per acquisition stack (XtremeCT: 110 slices; XtremeCT II: 168); a stack is one rotation.
STACK_SLICES = {"xtremect1": 110, "xtremect2": 168}


def hu_to_density(hu, calibration: Calibration):
    """mg HA/cm3 of a material of the given Hounsfield units under this scanner's calibration."""
    return (np.asarray(hu, dtype=np.float64) / 1000.0 + 1.0) * calibration.mu_water * calibration.density_slope \
        + calibration.density_intercept


@dataclass(frozen=True)
class ScannerSettings:
    """One scanner's imaging chain for one case (drawn per anatomy seed; repeats keep it)."""

    scanner: str
    voxel_mm: float
    psf_core_sigma_mm: float
    psf_tail_sigma_mm: float
    psf_tail_weight: float
    psf_z_stretch: float
    noise_sd: float  # mg HA/cm3 of the final voxels
    noise_cutoff: float  # cycles/voxel: the apodisation roll-off
    noise_floor: float  # cycles/voxel added to the ramp (low-frequency content)
    mottle_fraction: float  # share of the variance in the low-frequency mottle
    noise_z_taps: tuple[float, float]  # weights of the +-1 and +-2 neighbouring slices
    air_offset_hu: float  # air reads slightly above -1000 HU on a real scan

    def to_dict(self) -> dict:
        return asdict(self)

    def mtf10_lp_per_mm(self) -> float:
        """In-plane spatial frequency where the modulation transfer falls to 10 % (line pairs/mm)."""
        f = np.linspace(0.01, 20, 4000)
        mtf = (1 - self.psf_tail_weight) * np.exp(-2 * np.pi ** 2 * self.psf_core_sigma_mm ** 2 * f ** 2) \
            + self.psf_tail_weight * np.exp(-2 * np.pi ** 2 * self.psf_tail_sigma_mm ** 2 * f ** 2)
        return float(f[np.argmax(mtf < 0.1)])


def draw_scanner(rng: np.random.Generator, scanner: str, voxel_mm: float) -> ScannerSettings:
    if scanner not in CALIBRATIONS:
        raise ValueError(f"unknown scanner {scanner!r}; expected one of {', '.join(CALIBRATIONS)}")
    fine = voxel_mm < 0.07
    # XtremeCT II is sharper (nominal resolution ~95 um against ~130 um); reconstructing XtremeCT II data
    # at 82 um keeps its optics but averages more.
    if scanner == "xtremect1":
        core = rng.uniform(0.080, 0.115)
    else:
        core = rng.uniform(0.058, 0.085) if fine else rng.uniform(0.068, 0.095)
    # Noise: 30-130 mg HA/cm3 across cases; smaller voxels are noisier, XtremeCT II at 61 um the most.
    low, high = (55.0, 130.0) if fine else ((30.0, 95.0) if scanner == "xtremect1" else (30.0, 80.0))
    noise_sd = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    return ScannerSettings(
        scanner=scanner,
        voxel_mm=float(voxel_mm),
        psf_core_sigma_mm=float(core),
        psf_tail_sigma_mm=float(rng.uniform(0.22, 0.45)),
        psf_tail_weight=float(rng.uniform(0.03, 0.10)),
        psf_z_stretch=float(rng.uniform(1.0, 1.25)),
        noise_sd=noise_sd,
        noise_cutoff=float(rng.uniform(0.13, 0.17)),
        noise_floor=float(rng.uniform(0.03, 0.10)),
        mottle_fraction=float(rng.uniform(0.03, 0.10)),
        noise_z_taps=(float(rng.uniform(0.20, 0.34)), float(rng.uniform(0.02, 0.08))),
        air_offset_hu=float(rng.uniform(0.0, 25.0)),
    )


# -- point spread ------------------------------------------------------------------------------------
def psf_halo_voxels(settings: ScannerSettings) -> int:
    """Voxels of design needed around a block for its core blur."""
    return int(np.ceil(3.5 * settings.psf_core_sigma_mm * settings.psf_z_stretch / settings.voxel_mm)) + 1


def _sigmas(sigma_mm: float, settings: ScannerSettings) -> list[float]:
    return [sigma_mm * s / settings.voxel_mm for s in (settings.psf_z_stretch, 1.0, 1.0)]


def apply_psf_core(volume: np.ndarray, settings: ScannerSettings) -> np.ndarray:
    """The design (float32, z y x) blurred by the point spread's sharp core."""
    return ndi.gaussian_filter(volume, _sigmas(settings.psf_core_sigma_mm, settings), mode="nearest", truncate=3.5)


def apply_psf_tail(core_blurred: np.ndarray, settings: ScannerSettings) -> None:
    """In place: (1 - w) core + w tail. The tail Gaussian is the core's blurred further by
    sqrt(tail^2 - core^2) (Gaussians compose), applied to the assembled volume; beyond its ends the
    volume is extended by its edge values."""
    extra = np.sqrt(max(settings.psf_tail_sigma_mm ** 2 - settings.psf_core_sigma_mm ** 2, 0.0))
    wide = ndi.gaussian_filter(core_blurred, _sigmas(extra, settings), mode="nearest", truncate=3.0)
    core_blurred *= np.float32(1.0 - settings.psf_tail_weight)
    wide *= np.float32(settings.psf_tail_weight)
    core_blurred += wide


# -- noise -------------------------------------------------------------------------------------------
def _noise_filter(shape: tuple[int, int], settings: ScannerSettings) -> np.ndarray:
    """Amplitude filter (rfft2 layout) whose output has unit variance for unit white noise input."""
    fy = sfft.fftfreq(shape[0]).astype(np.float32)[:, None]
    fx = sfft.rfftfreq(shape[1]).astype(np.float32)[None, :]
    f = np.hypot(fy, fx)
    ramp = (f + settings.noise_floor) * np.exp(-(f / settings.noise_cutoff) ** 2)
    mottle = np.exp(-(f / 0.04) ** 2)
    ramp /= _mean_power(ramp, shape)
    mottle /= _mean_power(mottle, shape)
    nps = (1 - settings.mottle_fraction) * ramp + settings.mottle_fraction * mottle
    return np.sqrt(nps / _mean_power(nps, shape)).astype(np.float32)


def _mean_power(nps: np.ndarray, shape) -> float:
    # The variance a real field gets from this spectrum, counting the rfft half-plane's columns twice.
    weights = np.full(nps.shape[1], 2.0)
    weights[0] = 1.0
    if shape[1] % 2 == 0:
        weights[-1] = 1.0
    return float((nps * weights[None, :]).sum() / (shape[0] * shape[1]))


class SliceNoise:
    """Correlated noise slice by slice: slice k is a fixed function of (seed, k), whatever is asked before."""

    def __init__(self, seed: int, shape: tuple[int, int], settings: ScannerSettings):
        self.seed = int(seed)
        self.shape = shape
        self.filter = _noise_filter(shape, settings)
        b, c = settings.noise_z_taps
        taps = np.array([c, b, 1.0, b, c])
        self.taps = (taps / np.sqrt((taps ** 2).sum())).astype(np.float32)
        self.sd = np.float32(settings.noise_sd)
        self._cache: dict[int, np.ndarray] = {}

    def _plane(self, k: int) -> np.ndarray:
        if k not in self._cache:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7211, k + 1000]))
            white = rng.standard_normal(self.shape, dtype=np.float32)
            spectrum = sfft.rfft2(white, workers=2)
            spectrum *= self.filter
            self._cache[k] = sfft.irfft2(spectrum, s=self.shape, workers=2).astype(np.float32)
            for old in [key for key in self._cache if key < k - 4]:
                del self._cache[old]
        return self._cache[k]

    def slice(self, k: int) -> np.ndarray:
        out = np.zeros(self.shape, dtype=np.float32)
        for offset, tap in zip(range(-2, 3), self.taps):
            out += tap * self._plane(k + offset)
        out *= self.sd
        return out


# -- motion ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MotionTrack:
    """In-plane displacement (mm) of the hand as a function of the rotation's progress tau in [0, 1)."""

    jumps: tuple[tuple[float, float, float, float], ...]  # (tau, width, dy, dx): a move that is then held
    tremor: tuple[float, float, float]  # (amplitude mm, cycles per rotation, phase)
    z_gain: float  # relative change of the displacement per stack length along z
    start_angle: float = 0.0  # radians: the view angle at which this stack's rotation began

    def displacement(self, tau: np.ndarray, z_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """The displacement at tau, measured from the position where the image shows the bone.

        An edge whose normal points at angle phi is drawn by the views near phi, so it is moved by the
        displacement at that moment along its normal; a contour fitted to all its edges (and a
        thresholded region's centroid) moves by t = 2 mean(n n^T d) over the views. Subtracting t puts
        the reconstructed bone where the truth is. Measured from the start position instead (version
        1), held moves put the image's bone up to 0.8 mm off the truth in motion grade 3.
        """
        dy, dx = self._from_start(tau)
        ty, tx = self._edge_shift
        gain = 1.0 + self.z_gain * (z_fraction - 0.5)
        return (dy - ty) * gain, (dx - tx) * gain

    @functools.cached_property
    def _edge_shift(self) -> tuple[float, float]:
        """t = 2 mean(n n^T d) over the views: where the edges put the bone, seen from the start."""
        gy, gx = self._from_start(_TAU_GRID)
        phi = self.start_angle + np.pi * _TAU_GRID
        ny, nx = np.sin(phi), np.cos(phi)
        return 2 * np.mean(ny * ny * gy + ny * nx * gx), 2 * np.mean(ny * nx * gy + nx * nx * gx)

    def _from_start(self, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dy = np.zeros_like(tau)
        dx = np.zeros_like(tau)
        for t0, width, jy, jx in self.jumps:
            step = 0.5 * (1 + np.tanh((tau - t0) / width))
            dy += jy * step
            dx += jx * step
        amp, cycles, phase = self.tremor
        dy += amp * np.sin(2 * np.pi * cycles * tau + phase)
        dx += amp * np.cos(2 * np.pi * cycles * tau + 1.3 * phase)
        return dy, dx


#: Every view equally: the k-space lines are spread evenly over the half rotation.
_TAU_GRID = (np.arange(4096, dtype=np.float64) + 0.5) / 4096


def draw_motion(rng: np.random.Generator, grade: int) -> MotionTrack | None:
    """Grade 0 none; 1 one small move; 2 one or two moves and tremor; 3 several large moves and tremor."""
    if grade == 0:
        return None
    n_jumps, size, tremor = {1: (1, (0.04, 0.10), 0.0), 2: (int(rng.integers(1, 3)), (0.10, 0.25), 0.02),
                             3: (int(rng.integers(2, 4)), (0.25, 0.50), 0.04)}[grade]
    jumps = []
    for _ in range(n_jumps):
        angle = rng.uniform(0, 2 * np.pi)
        magnitude = rng.uniform(*size)
        jumps.append((float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.003, 0.03)),
                      float(magnitude * np.sin(angle)), float(magnitude * np.cos(angle))))
    tremor_amp = float(tremor * rng.uniform(0.6, 1.4))
    return MotionTrack(tuple(jumps), (tremor_amp, float(rng.uniform(3, 9)), float(rng.uniform(0, 2 * np.pi))),
                       float(rng.uniform(-0.4, 0.4)), float(rng.uniform(0, np.pi)))


def apply_motion(plane: np.ndarray, track: MotionTrack, voxel_mm: float, z_fraction: float, pad: int) -> np.ndarray:
    """One slice (values relative to air) as reconstructed when the hand moved along ``track``."""
    padded = np.pad(plane, pad, mode="reflect")  # continuous at a crop's edge: no streaks from it
    shape = padded.shape
    spectrum = sfft.rfft2(padded, workers=2)
    ky = (sfft.fftfreq(shape[0]) / voxel_mm).astype(np.float32)[:, None]
    kx = (sfft.rfftfreq(shape[1]) / voxel_mm).astype(np.float32)[None, :]
    # The view at rotation angle phi (over 180 degrees) fills the k-space line through the origin at phi.
    tau = np.mod(np.arctan2(ky, kx) - track.start_angle, np.pi) / np.pi
    dy, dx = track.displacement(tau, z_fraction)
    spectrum *= np.exp(-2j * np.pi * (ky * dy + kx * dx)).astype(np.complex64)
    moved = sfft.irfft2(spectrum, s=shape, workers=2).astype(np.float32)
    return moved[pad:-pad, pad:-pad]


# -- quantisation ------------------------------------------------------------------------------------
def to_native(density: np.ndarray, calibration: Calibration) -> np.ndarray:
    native = (density - np.float32(calibration.density_intercept)) / np.float32(calibration.density_per_native)
    return np.clip(np.rint(native), -32768, 32767).astype(np.int16)
