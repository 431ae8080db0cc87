"""Training samples: random patches of prepared cases (2D with slice context, 3D) and augmentation.

Augmentation: intensity scale/shift/noise, small rotations, directional blur (like motion) and, on
request, flips (see :data:`FLIPS` and the note in :mod:`.training` on why mirror flips are off by default).
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


def _augment_2d(images: torch.Tensor, masks: torch.Tensor, rng: np.random.Generator, flips: str = "none"):
    """images: (b, c, h, w) (c context slices), masks: (b, 1, h, w); images in mg HA/cm³ (before z-scoring)."""
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
    return images * scale + shift + noise, masks


def _augment_3d(images: torch.Tensor, masks: torch.Tensor, rng: np.random.Generator, flips: str = "none"):
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
