"""The post-processing steps as first written, slice by slice with scipy's own morphology: the
definition the vectorised versions in segmentation/postprocess.py must reproduce voxel for voxel."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_vbmd.segmentation.postprocess import EDGE_SMOOTHING_MM, EDGE_WINDOW_MM, refinement_region


def fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    out = np.empty_like(mask, dtype=bool)
    for z in range(mask.shape[0]):
        out[z] = ndimage.binary_fill_holes(mask[z]) if mask[z].any() else False
    return out


def keep_largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def refine_boundary(mask: np.ndarray, density: np.ndarray, spacing, band_mm: float) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if band_mm == 0.0 or not mask.any():
        return mask
    dy, dx = float(spacing[1]), float(spacing[2])
    out = mask.copy()
    present = np.flatnonzero(mask.any(axis=(1, 2)))
    _, region_y, region_x = refinement_region(mask, spacing, band_mm)
    y0, y1, x0, x1 = region_y.start, region_y.stop, region_x.start, region_x.stop
    window = (2 * int(round(EDGE_WINDOW_MM / 2 / dy)) + 1, 2 * int(round(EDGE_WINDOW_MM / 2 / dx)) + 1)
    sigma = (EDGE_SMOOTHING_MM / dy, EDGE_SMOOTHING_MM / dx)
    ry, rx = int(band_mm / dy), int(band_mm / dx)
    oy, ox = np.mgrid[-ry : ry + 1, -rx : rx + 1]
    reach_disk = (oy * dy) ** 2 + (ox * dx) ** 2 <= band_mm**2 + 1e-12
    for z in present:
        m = mask[z, y0:y1, x0:x1]
        core = ndimage.binary_erosion(m, reach_disk)
        if not core.any():
            continue
        band = ndimage.binary_dilation(m, reach_disk) & ~core
        smooth = ndimage.gaussian_filter(density[z, y0:y1, x0:x1].astype(np.float32), sigma)
        half_max = 0.5 * (ndimage.maximum_filter(smooth, size=window) + ndimage.minimum_filter(smooth, size=window))
        refined = ndimage.binary_fill_holes(core | (band & (smooth >= half_max)))
        labels, n = ndimage.label(refined)
        if n > 1:
            touching = np.unique(labels[core])
            refined = np.isin(labels, touching[touching > 0])
        out[z, y0:y1, x0:x1] = refined
    return out
