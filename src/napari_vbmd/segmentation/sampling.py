"""Training samples: random patches of prepared cases (2D with slice context, 3D) and augmentation.

Augmentation: intensity scale/shift/noise, small rotations, directional blur (like motion) and, on
request, flips (see :data:`FLIPS` and the note in :mod:`.training` on why mirror flips are off by default).
``appearance="broad"`` adds acquisition- and texture-like changes after those (:func:`_broad_appearance_2d`):
wider blur, weaker or stronger fine texture, compressed bone contrast, a smooth bias field and correlated
noise, so a network does not lean on the look of the generator it was trained on. ``"broad-half"`` gives
each sample those changes with probability 1/2, so half of what the network sees keeps the standard look.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import VbmdError
from .datasets import PreparedCase
from .preprocess import context_indices, context_offsets


FLIPS = ("none", "rot180", "all")
#: "standard": the augmentation every shipped checkpoint was trained with; "broad": and :func:`_broad_appearance_2d`;
#: "broad-half": :func:`_broad_appearance_2d` on each sample with probability 1/2
APPEARANCES = ("standard", "broad", "broad-half")


def _flip_axes(flips: str, rng: np.random.Generator) -> tuple[int, ...]:
    """The in-plane axes to flip for one sample. "all" flips each axis with probability 1/2 (a single
    flip mirrors the hand); "rot180" flips both or neither (a rotation, the hand stays a right hand)."""
    if flips == "none":
        return ()
    if flips == "rot180":
        return (-1, -2) if rng.random() < 0.5 else ()
    if flips == "all":
        return tuple(axis for axis in (-1, -2) if rng.random() < 0.5)
    raise VbmdError(f"unknown flips setting {flips!r}; use {', '.join(FLIPS)}")


def _augment_2d(images: torch.Tensor, masks: torch.Tensor, rng: np.random.Generator, flips: str = "none",
                appearance: str = "standard", pixel_mm: float = 0.3):
    """images: (b, c, h, w) (c context slices), masks: (b, 1, h, w); images in mg HA/cm³ (before z-scoring).
    ``pixel_mm``: the working grid's in-plane voxel size (only ``appearance="broad"`` uses it)."""
    b = images.shape[0]
    for i in range(b):
        axes = _flip_axes(flips, rng)
        if axes:
            images[i], masks[i] = images[i].flip(axes), masks[i].flip(axes)
    angles = torch.tensor(rng.uniform(-10, 10, b) * math.pi / 180, dtype=torch.float32)
    cos, sin = torch.cos(angles), torch.sin(angles)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    grid = F.affine_grid(theta, images.shape, align_corners=False)  # the same motion for every context slice
    background = images.amin(dim=(1, 2, 3), keepdim=True)
    images = F.grid_sample(images - background, grid, align_corners=False, padding_mode="zeros") + background
    masks = F.grid_sample(masks, grid, align_corners=False, padding_mode="zeros")
    # directional blur, like patient motion
    channels = images.shape[1]
    for i in range(b):
        if rng.random() < 0.3:
            length = int(rng.integers(2, 6)) * 2 + 1
            kernel = torch.full((channels, 1, 1, length), 1.0 / length)
            if rng.random() < 0.5:
                kernel = kernel.transpose(-1, -2)
            pad = (length // 2, length // 2, 0, 0) if kernel.shape[-1] > 1 else (0, 0, length // 2, length // 2)
            images[i : i + 1] = F.conv2d(F.pad(images[i : i + 1], pad, mode="replicate"), kernel, groups=channels)
    scale = torch.tensor(rng.uniform(0.9, 1.1, (b, 1, 1, 1)), dtype=torch.float32)
    shift = torch.tensor(rng.uniform(-30, 30, (b, 1, 1, 1)), dtype=torch.float32)
    noise = torch.randn_like(images) * torch.tensor(rng.uniform(0, 40, (b, 1, 1, 1)), dtype=torch.float32)
    images = images * scale + shift + noise
    if appearance == "broad":
        images = _broad_appearance_2d(images, rng, pixel_mm)
    elif appearance == "broad-half":
        chosen = [i for i in range(b) if rng.random() < 0.5]
        if chosen:
            images[chosen] = _broad_appearance_2d(images[chosen], rng, pixel_mm)
    elif appearance != "standard":
        raise VbmdError(f"unknown appearance augmentation {appearance!r}; use {' or '.join(APPEARANCES)}")
    return images, masks


def _gaussian_blur_2d(image: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Separable Gaussian blur of one (1, c, h, w) sample, each channel alike, edges replicated."""
    radius = max(1, int(math.ceil(3 * sigma_px)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma_px) ** 2)
    kernel = kernel / kernel.sum()
    channels = image.shape[1]
    row = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    image = F.conv2d(F.pad(image, (radius, radius, 0, 0), mode="replicate"), row, groups=channels)
    return F.conv2d(F.pad(image, (0, 0, radius, radius), mode="replicate"), row.transpose(-1, -2), groups=channels)


def _broad_appearance_2d(images: torch.Tensor, rng: np.random.Generator, pixel_mm: float) -> torch.Tensor:
    """Per sample, each with probability 1/2 and the same for every context slice (one acquisition):

    - a wider point spread: Gaussian blur of sigma 0.03-0.2 mm (a thin head cortex fades below the half maximum);
    - fine texture weaker or stronger: what a 0.6 mm blur removes scaled by 0.5-1.4 (other trabecular textures,
      reconstruction kernels);
    - bone contrast compressed or stretched: densities above 100 mg HA/cm³ scaled by 0.7-1.15 about 100 (faint
      cortex, other calibrations' partial volume);
    - a smooth bias field of up to +-50 mg HA/cm³ over 5-15 mm (cupping, beam hardening);
    - correlated noise of SD 10-60 mg HA/cm³, correlation length 0.1-0.45 mm (other reconstruction noise).

    The mask is never changed: the truth of an image does not depend on how it was acquired.
    """
    out = images.clone()
    b, _, h, w = images.shape
    for i in range(b):
        x = out[i : i + 1]
        if rng.random() < 0.5:
            x = _gaussian_blur_2d(x, float(rng.uniform(0.03, 0.2)) / pixel_mm)
        if rng.random() < 0.5:
            smooth = _gaussian_blur_2d(x, 0.6 / pixel_mm)
            x = smooth + (x - smooth) * float(rng.uniform(0.5, 1.4))
        if rng.random() < 0.5:
            pivot = 100.0
            x = torch.where(x > pivot, pivot + (x - pivot) * float(rng.uniform(0.7, 1.15)), x)
        if rng.random() < 0.5:
            scale_mm = float(rng.uniform(5.0, 15.0))
            gh, gw = max(2, int(round(h * pixel_mm / scale_mm)) + 1), max(2, int(round(w * pixel_mm / scale_mm)) + 1)
            coarse = torch.tensor(rng.standard_normal((1, 1, gh, gw)), dtype=torch.float32)
            field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
            field = field / field.abs().amax().clamp_min(1e-6) * float(rng.uniform(0, 50))
            x = x + field
        if rng.random() < 0.5:
            white = torch.tensor(rng.standard_normal((1, x.shape[1], h, w)), dtype=torch.float32)  # slices apart
            grain = _gaussian_blur_2d(white, float(rng.uniform(0.1, 0.45)) / pixel_mm)
            x = x + grain / grain.std().clamp_min(1e-6) * float(rng.uniform(10, 60))
        out[i : i + 1] = x
    return out


def _augment_3d(images: torch.Tensor, masks: torch.Tensor, rng: np.random.Generator, flips: str = "none",
                appearance: str = "standard", pixel_mm: float = 0.3):
    if appearance != "standard":
        raise VbmdError("appearance augmentation 'broad' is for 2D networks only")
    axes = _flip_axes(flips, rng)
    if axes:
        images, masks = images.flip(axes), masks.flip(axes)
    scale, shift = float(rng.uniform(0.9, 1.1)), float(rng.uniform(-30, 30))
    return images * scale + shift + torch.randn_like(images) * float(rng.uniform(0, 40)), masks


# -- sampling -----------------------------------------------------------------------------------------


def _crop_or_pad(array: np.ndarray, size: tuple[int, ...], start: tuple[int, ...], fill: float) -> np.ndarray:
    out = np.full(size, fill, dtype=np.float32)
    src, dst = [], []
    for n, s, st in zip(array.shape, size, start):
        # st may be negative (pad before) when the array is smaller than the patch
        lo, hi = max(st, 0), min(st + s, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - st, hi - st))
    out[tuple(dst)] = array[tuple(src)]
    return out


def _random_start(n: int, s: int, rng, centre: int | None = None) -> int:
    if n <= s:
        return -int(rng.integers(0, s - n + 1))
    if centre is not None:
        lo = int(np.clip(centre - s + 16, 0, n - s))
        hi = int(np.clip(centre - 16, 0, n - s))
        if hi >= lo:
            return int(rng.integers(lo, hi + 1))
    return int(rng.integers(0, n - s + 1))


class _Sampler2D:
    def __init__(self, cases: list[PreparedCase], patch, empty_fraction: float, context_mm=(0.0,)):
        self.cases, self.patch = cases, tuple(patch)
        self.offsets = [context_offsets(context_mm, case.spacing_z) for case in cases]
        self.with_bone = [(c, z) for c, case in enumerate(cases) for z in np.flatnonzero(case.mask.max(axis=(1, 2)) > 0.5)]
        self.without = [(c, z) for c, case in enumerate(cases) for z in np.flatnonzero(case.mask.max(axis=(1, 2)) <= 0.5)]
        self.empty_fraction = empty_fraction if self.without else 0.0
        if not self.with_bone:
            raise VbmdError("no training slice holds MC2")

    def __len__(self):
        return len(self.with_bone) + len(self.without)

    def batch(self, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
        images, masks = [], []
        for _ in range(n):
            pool = self.without if rng.random() < self.empty_fraction else self.with_bone
            c, z = pool[int(rng.integers(len(pool)))]
            case = self.cases[c]
            img = case.image[context_indices(np.array([z]), self.offsets[c], 0, case.image.shape[0])[0]]
            msk = case.mask[z]
            if msk.max() > 0.5:
                ys, xs = np.nonzero(msk > 0.5)
                cy, cx = int(ys.mean()), int(xs.mean())
            else:
                cy = cx = None
            start = (_random_start(msk.shape[0], self.patch[0], rng, cy), _random_start(msk.shape[1], self.patch[1], rng, cx))
            # padded like the pipeline pads (density 0, soft tissue), not with the slice's noisy minimum
            images.append(_crop_or_pad(img, (img.shape[0], *self.patch), (0, *start), 0.0))
            masks.append(_crop_or_pad(msk, self.patch, start, 0.0))
        return np.stack(images), np.stack(masks)[:, None]


class _Sampler3D:
    def __init__(self, cases: list[PreparedCase], patch):
        self.cases, self.patch = cases, tuple(patch)

    def __len__(self):
        return len(self.cases)

    def batch(self, n: int, rng):
        images, masks = [], []
        for _ in range(n):
            case = self.cases[int(rng.integers(len(self.cases)))]
            zyx = np.argwhere(case.mask > 0.5)
            centre = zyx[int(rng.integers(len(zyx)))] if len(zyx) else [None] * 3
            start = tuple(_random_start(n_, s, rng, c) for n_, s, c in zip(case.image.shape, self.patch, centre))
            images.append(_crop_or_pad(case.image, self.patch, start, float(case.image.min())))
            masks.append(_crop_or_pad(case.mask, self.patch, start, 0.0))
        return np.stack(images)[:, None], np.stack(masks)[:, None]
