"""A segmentation of MC2 that needs no trained weights (``--model classical``).

For sites with no model yet and to bootstrap labels for training. It runs on the same crop as the
networks (densities in mg HA/cm³, left hands already mirrored to right), at
:data:`CLASSICAL_SPACING_MM` in-plane and native slices:

1. per slice: Gaussian smoothing (0.1 mm), threshold at :data:`CORTEX_THRESHOLD_MG` (about half-way
   between soft tissue and cortex, so the cut sits on the cortex's outer edge), a closing of
   :data:`CLOSING_MM` that bridges small cortical breaks (erosions), exact hole filling;
2. 3-D connected components; the component that is MC2 is chosen by :func:`choose_mc2`;
3. a morphological geodesic active contour per slice (a few iterations, no balloon force) snaps
   the contour onto the strongest nearby edge and smooths it; holes are filled again.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

CLASSICAL_SPACING_MM = 0.12
CORTEX_THRESHOLD_MG = 450.0
CLOSING_MM = 0.6
#: a component smaller than this fraction of the largest is never MC2
MIN_FRACTION_OF_LARGEST = 0.15
ACTIVE_CONTOUR_ITERATIONS = 4


def _disk(radius_px: int) -> np.ndarray:
    r = max(1, int(radius_px))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy**2 + xx**2) <= r * r


def bone_candidates(density: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Per-slice solid bone cross-sections (bool), before choosing MC2."""
    sigma = 0.1 / spacing[1]
    radius = int(round(CLOSING_MM / spacing[1]))
    structure = _disk(radius)
    pad = radius + 1
    out = np.zeros(density.shape, dtype=bool)
    for z in range(density.shape[0]):
        smooth = ndimage.gaussian_filter(density[z], sigma)
        bone = smooth > CORTEX_THRESHOLD_MG
        if not bone.any():
            continue
        # pad so the closing does not stick to the border
        bone = np.pad(bone, pad)
        bone = ndimage.binary_closing(bone, structure)[pad:-pad, pad:-pad]
        out[z] = ndimage.binary_fill_holes(bone)
    return out


def choose_mc2(labels: np.ndarray, n: int) -> int:
    """The label of MC2 among ``n`` 3-D bone components (right-hand orientation).

    Heuristic, in this order: (1) only components of at least :data:`MIN_FRACTION_OF_LARGEST` of the
    largest one's volume count (drops noise and small sesamoid-like bits); (2) MC2 is the bone the
    scan is aimed at, so among those the one that spans the most slices (the metacarpal runs through
    the whole scan while the phalanx base only appears beyond the joint space), ties broken by the
    in-plane centroid nearest the crop's centre.
    """
    if n == 0:
        return 0
    index = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(np.ones_like(labels, dtype=np.uint8), labels, index)
    keep = index[sizes >= MIN_FRACTION_OF_LARGEST * sizes.max()]
    objects = ndimage.find_objects(labels)
    centre = np.array(labels.shape[1:]) / 2.0
    best, best_key = int(keep[0]), None
    for label in keep:
        sl = objects[label - 1]
        n_slices = sl[0].stop - sl[0].start
        com = np.array(ndimage.center_of_mass(labels[sl] == label)[1:]) + [sl[1].start, sl[2].start]
        distance = float(np.hypot(*(com - centre)))
        key = (n_slices, -distance)
        if best_key is None or key > best_key:
            best, best_key = int(label), key
    return best


def refine_active_contour(mask: np.ndarray, density: np.ndarray, spacing) -> np.ndarray:
    from skimage.segmentation import inverse_gaussian_gradient, morphological_geodesic_active_contour

    out = np.zeros_like(mask)
    sigma = 0.1 / spacing[1]
    for z in range(mask.shape[0]):
        if not mask[z].any():
            continue
        edges = inverse_gaussian_gradient(density[z].astype(np.float32) / 1000.0, alpha=100.0, sigma=sigma)
        evolved = morphological_geodesic_active_contour(
            edges, num_iter=ACTIVE_CONTOUR_ITERATIONS, init_level_set=mask[z].astype(np.int8), smoothing=1,
            balloon=0,
        )
        out[z] = ndimage.binary_fill_holes(evolved.astype(bool))
    return out


def classical_mask(density: np.ndarray, spacing, active_contour: bool = True) -> np.ndarray:
    bone = bone_candidates(density, spacing)
    labels, n = ndimage.label(bone)
    if n == 0:
        return bone
    mc2 = labels == choose_mc2(labels, n)
    if active_contour:
        mc2 = refine_active_contour(mc2, density, spacing)
    return mc2


def classical_probability(density: np.ndarray, spacing) -> np.ndarray:
    """Pipeline hook: a 0/1 float map on the working grid (interpolated back, then thresholded)."""
    return classical_mask(density, spacing).astype(np.float32)
