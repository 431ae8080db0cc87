"""Shared pre-processing for inference and training: find the bone, crop, density, mirror, resample.

Training (``datasets.py``) and inference (``pipeline.py``) use these same functions, so a model sees
at inference exactly the kind of input it was trained on.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from ..errors import VbmdError
from ..scan import UNIT_DENSITY, Scan

#: density (mg HA/cm³) above which a smoothed voxel counts as bone when looking for the bone region
BONE_SEARCH_THRESHOLD_MG = 350.0
#: bone blobs smaller than this (mm², in the projection) are noise, not bone
MIN_BONE_AREA_MM2 = 4.0


@dataclasses.dataclass(frozen=True)
class Box:
    """Index ranges [start, stop) of a crop in the scan's voxel grid (z, y, x)."""

    z0: int
    z1: int
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return slice(self.z0, self.z1), slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.z1 - self.z0, self.y1 - self.y0, self.x1 - self.x0

    def to_list(self) -> list[int]:
        return [self.z0, self.z1, self.y0, self.y1, self.x0, self.x1]

    def in_scan(self, region: tuple[slice, slice, slice]) -> tuple[slice, slice, slice]:
        """``region`` (z, y, x slices of the crop) as slices of the scan."""
        return tuple(slice(start + s.start, start + s.stop) for start, s in zip((self.z0, self.y0, self.x0), region))


def density_block(scan: Scan, index) -> np.ndarray:
    """mg HA/cm³ (float32) of ``scan.data[index]`` without converting the whole scan."""
    block = scan.data[index]
    if scan.unit == UNIT_DENSITY:
        return np.asarray(block, dtype=np.float32)
    sub = dataclasses.replace(scan, data=np.ascontiguousarray(block), header={})
    return sub.density()


def find_bone_box(scan: Scan, margin_mm: float = 4.0, chunk: int = 8) -> Box:
    """The bounding box of the bone in the scan, plus ``margin_mm``.

    Slabs of ``chunk`` slices are averaged and pooled in-plane to about 0.35 mm (noise averages out,
    thin cortex survives), thresholded at :data:`BONE_SEARCH_THRESHOLD_MG`, and blobs smaller than
    :data:`MIN_BONE_AREA_MM2` are dropped. Cost: one pass over the voxels, no full-size copy.
    """
    if scan.kind != "image":
        raise VbmdError("segmentation needs a greyscale image, not a mask", scan.source)
    scan.require_spacing("segmentation")  # mm thresholds on a 1 mm placeholder would be nonsense
    nz, ny, nx = scan.shape
    dz, dy, dx = scan.spacing
    py = max(1, int(round(0.35 / dy)))
    px = max(1, int(round(0.35 / dx)))
    hy, hx = ny // py, nx // px
    if hy < 1 or hx < 1:
        raise VbmdError("scan is too small to segment", scan.source)
    projection = np.full((hy, hx), -np.inf, dtype=np.float32)
    slab_has_bone = []
    for z0 in range(0, nz, chunk):
        slab = scan.data[z0 : z0 + chunk, : hy * py, : hx * px]
        mean = slab.mean(axis=0, dtype=np.float32)
        pooled = mean.reshape(hy, py, hx, px).mean(axis=(1, 3))
        pooled = density_block(dataclasses.replace(scan, data=pooled[None], header={}), np.s_[...])[0]
        np.maximum(projection, pooled, out=projection)
        slab_has_bone.append(bool((pooled > BONE_SEARCH_THRESHOLD_MG).any()))
    bone = projection > BONE_SEARCH_THRESHOLD_MG
    labels, n = ndimage.label(bone)
    if n:
        sizes = ndimage.sum_labels(bone, labels, index=np.arange(1, n + 1)) * (py * dy * px * dx)
        keep = np.flatnonzero(sizes >= MIN_BONE_AREA_MM2) + 1
        bone = np.isin(labels, keep)
    if not bone.any():
        raise VbmdError(
            f"no bone found in the scan (no region denser than {BONE_SEARCH_THRESHOLD_MG:.0f} mg HA/cm3 "
            f"larger than {MIN_BONE_AREA_MM2:.0f} mm2)",
            scan.source,
        )
    ys, xs = np.nonzero(bone)
    my, mx = int(np.ceil(margin_mm / dy)), int(np.ceil(margin_mm / dx))
    y0 = max(0, ys.min() * py - my)
    y1 = min(ny, (ys.max() + 1) * py + my)
    x0 = max(0, xs.min() * px - mx)
    x1 = min(nx, (xs.max() + 1) * px + mx)
    z_chunks = np.flatnonzero(slab_has_bone)
    mz = int(np.ceil(margin_mm / dz))
    z0 = max(0, int(z_chunks.min()) * chunk - mz) if len(z_chunks) else 0
    z1 = min(nz, (int(z_chunks.max()) + 1) * chunk + mz) if len(z_chunks) else nz
    return Box(int(z0), int(z1), int(y0), int(y1), int(x0), int(x1))


def working_size(n: int, spacing: float, working_spacing: float) -> int:
    return max(1, int(round(n * spacing / working_spacing)))


def _resize_axis(array: np.ndarray, n_out: int, axis: int, mode: str) -> np.ndarray:
    """``array`` resized along ``axis`` to ``n_out`` as torch's ``interpolate`` does it (float32).

    ``area``: output i averages inputs [floor(i n_in / n_out), ceil((i + 1) n_in / n_out)) (adaptive
    average pooling). ``linear``: pixel centres aligned
    (align_corners=False): source position (i + 0.5) n_in / n_out - 0.5, clamped at 0 and computed in
    float32 as torch computes it, its two neighbours weighted by distance, the last input repeated
    past the end."""
    n_in = array.shape[axis]
    if n_in == n_out:
        return np.asarray(array, dtype=np.float32)
    out = np.arange(n_out)
    shape = [1] * array.ndim
    shape[axis] = n_out
    if mode == "area":
        starts = (out * n_in) // n_out
        stops = -((-(out + 1) * n_in) // n_out)
        lengths = stops - starts
        array = np.asarray(array, dtype=np.float32)
        sums = array.take(starts, axis=axis)
        for k in range(1, int(lengths.max())):
            inside = (k < lengths).reshape(shape).astype(np.float32)
            sums += array.take(np.minimum(starts + k, stops - 1), axis=axis) * inside
        return sums / lengths.reshape(shape).astype(np.float32)
    scale = np.float32(n_in) / np.float32(n_out)
    source = np.maximum(scale * (out.astype(np.float32) + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    i0 = np.minimum(source.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    fraction = (source - i0.astype(np.float32)).reshape(shape)
    array = np.asarray(array, dtype=np.float32)
    return array.take(i0, axis=axis) * (np.float32(1) - fraction) + array.take(i1, axis=axis) * fraction


def resample_slices(block: np.ndarray, out_hw: tuple[int, int], kind: str = "image") -> np.ndarray:
    """Resize every (y, x) slice of ``block`` (n, h, w) to ``out_hw``.

    Shrinking images averages (area), enlarging interpolates (bilinear, pixel centres aligned as
    the physical grid is). Masks are resampled as fractions (the same way) and stay float. The
    weights are torch's ``interpolate`` ones (a test compares), applied one axis at a time.
    """
    n, h, w = block.shape
    if (h, w) == tuple(out_hw):
        return np.asarray(block, dtype=np.float32)
    mode = "area" if out_hw[0] <= h and out_hw[1] <= w else "linear"
    return np.ascontiguousarray(_resize_axis(_resize_axis(block, out_hw[1], 2, mode), out_hw[0], 1, mode))


def resample_volume(volume: np.ndarray, out_shape: tuple[int, int, int]) -> np.ndarray:
    """Trilinear resize of a (z, y, x) volume (pixel centres aligned with the physical grid);
    shrinking on every axis averages (area), as torch's ``interpolate`` does."""
    if volume.shape == tuple(out_shape):
        return np.asarray(volume, dtype=np.float32)
    mode = "area" if all(o <= s for o, s in zip(out_shape, volume.shape)) else "linear"
    for axis in (2, 1, 0):
        volume = _resize_axis(volume, out_shape[axis], axis, mode)
    return np.ascontiguousarray(volume, dtype=np.float32)


def pad_to_multiple(array: np.ndarray, multiple: int, axes: tuple[int, ...], value: float = 0.0):
    """Pad ``axes`` at their end to a multiple of ``multiple``; returns (padded, original sizes)."""
    pads = [(0, 0)] * array.ndim
    for ax in axes:
        size = array.shape[ax]
        pads[ax] = (0, (-size) % multiple)
    if all(p == (0, 0) for p in pads):
        return array, array.shape
    return np.pad(array, pads, mode="constant", constant_values=value), array.shape


def context_offsets(context_mm, spacing_z: float) -> np.ndarray:
    """Slice offsets (int, one per input channel) of ``context_mm`` (mm along z) at ``spacing_z`` mm."""
    return np.array([int(round(float(c) / spacing_z)) for c in context_mm], dtype=np.int64)


def context_indices(z: np.ndarray, offsets: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """(len(z), len(offsets)) slice indices of each slice's context, clamped to [lo, hi)."""
    return np.clip(np.asarray(z, dtype=np.int64)[:, None] + offsets[None, :], lo, hi - 1)
