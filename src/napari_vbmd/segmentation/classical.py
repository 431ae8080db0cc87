"""A segmentation of MC2 that needs no trained weights (``--model classical``).

For sites with no model yet and to bootstrap labels for training. It runs on the same crop as the
networks (densities in mg HA/cm³, left hands already mirrored to right), at
:data:`CLASSICAL_SPACING_MM` in-plane and native slices:

1. per slice: Gaussian smoothing (0.1 mm), threshold at :data:`CORTEX_THRESHOLD_MG` (low enough that
   a thin, blurred cortex still closes into a ring; half-way to cortex left gaps of ~1 mm), a closing of
   :data:`CLOSING_MM` that bridges small cortical breaks (erosions), exact hole filling;
2. 3-D connected components; the component that is MC2 is chosen by :func:`choose_mc2`; when that
   component holds two metacarpals (joined through a bridge of noise or blur, a single slice being
   enough) the method cannot tell MC2 apart and says so (:func:`metacarpals_in`; the pipeline refuses);
3. a morphological geodesic active contour per slice (a few iterations, no balloon force) snaps
   the contour onto the strongest nearby edge and smooths it; holes are filled again.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..review_hand import SECTION_THINNING_MM, section_depth

CLASSICAL_SPACING_MM = 0.12
CORTEX_THRESHOLD_MG = 300.0
CLOSING_MM = 0.6
#: a component smaller than this fraction of the largest is never MC2
MIN_FRACTION_OF_LARGEST = 0.15
#: a component spanning fewer slices than this fraction of the longest span is not a metacarpal
MIN_SPAN_FRACTION = 0.6
#: components whose centroids are this close in x (mm) lie on the same finger ray
SAME_RAY_MM = 6.0
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


def _metacarpal_like(labels: np.ndarray, n: int):
    """(sizes, objects, labels of the components that may be metacarpals): at least
    :data:`MIN_FRACTION_OF_LARGEST` of the largest component's volume and :data:`MIN_SPAN_FRACTION` of the
    longest span in slices."""
    index = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(np.ones_like(labels, dtype=np.uint8), labels, index)
    keep = index[sizes >= MIN_FRACTION_OF_LARGEST * sizes.max()]
    objects = ndimage.find_objects(labels)
    spans = {int(label): objects[label - 1][0].stop - objects[label - 1][0].start for label in keep}
    longest = max(spans.values())
    return sizes, objects, [label for label, span in spans.items() if span >= MIN_SPAN_FRACTION * longest]


def bone_cores(bone: np.ndarray, spacing) -> np.ndarray:
    """Each slice of ``bone`` thinned by :data:`~napari_vbmd.review_hand.SECTION_THINNING_MM` from its outline
    (:func:`~napari_vbmd.review_hand.section_depth`, the thinning that tells bones apart in
    :func:`~napari_vbmd.review_hand.bones_per_slice`): a bridge narrower than twice that is gone, a bone keeps
    its core."""
    cores = np.zeros(bone.shape, dtype=bool)
    for z in np.flatnonzero(bone.reshape(bone.shape[0], -1).any(axis=1)):
        cores[z] = section_depth(bone[z], spacing) > SECTION_THINNING_MM
    return cores


def metacarpals_in(labels: np.ndarray, label: int, spacing) -> int:
    """How many bones that may be metacarpals component ``label`` of ``labels`` holds: its cores
    (:func:`bone_cores` of all components) that pass :func:`choose_mc2`'s rule among all the cores.

    Two metacarpals lying close join into one component wherever noise or blur bridges the gap, one slice
    being enough; :func:`choose_mc2` then sees one wide bone, and the pipeline's largest-component step keeps
    whichever of the two is the larger, MC3 as often as not (training generator's phantom 33025: Dice 0,
    D100 of MC3 given as MC2). Parting them instead left masks of half a bone on other phantoms; the method
    cannot tell which part is MC2, so it says how many it found and the pipeline refuses.
    """
    cores, m = ndimage.label(bone_cores(labels > 0, spacing))
    if m < 2:
        return min(m, 1)
    _, objects, metacarpal_cores = _metacarpal_like(cores, m)
    held = 0
    for core in metacarpal_cores:
        box = objects[core - 1]
        if (labels[box][cores[box] == core] == label).any():
            held += 1
    return held


def choose_mc2(labels: np.ndarray, n: int, spacing_x_mm: float = 0.12) -> int:
    """The label of MC2 among ``n`` 3-D bone components (right-hand orientation).

    In right-hand orientation (left hands are mirrored before this runs) x runs from the radial
    side to the ulnar side, so MC2 is the most radial of the metacarpals. Heuristic, in this order:
    (1) only components of at least :data:`MIN_FRACTION_OF_LARGEST` of the largest one's volume
    count (drops noise and small sesamoid-like bits); (2) metacarpals run through most of the scan
    while the phalanx bases only appear beyond the joint space, so only components spanning at
    least :data:`MIN_SPAN_FRACTION` of the longest span count; (3) of those, the one whose centroid
    is most radial (smallest x).
    """
    if n == 0:
        return 0
    sizes, objects, metacarpals = _metacarpal_like(labels, n)

    def centroid_x(label: int) -> float:
        sl = objects[label - 1]
        return float(ndimage.center_of_mass(labels[sl] == label)[2]) + sl[2].start

    x = {label: centroid_x(label) for label in metacarpals}
    most_radial = min(x.values())
    same_ray = [label for label in metacarpals if (x[label] - most_radial) * spacing_x_mm <= SAME_RAY_MM]
    return max(same_ray, key=lambda label: sizes[label - 1])


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


def classical_mask(density: np.ndarray, spacing, active_contour: bool = True,
                   findings: dict | None = None) -> np.ndarray:
    """MC2's mask on the working grid; ``findings["metacarpals_joined"]`` says how many metacarpals the chosen
    bone candidate held when it held more than one (see :func:`metacarpals_in`)."""
    bone = bone_candidates(density, spacing)
    labels, n = ndimage.label(bone)
    if n == 0:
        return bone
    chosen = choose_mc2(labels, n, spacing[2])
    if findings is not None:
        joined = metacarpals_in(labels, chosen, spacing)
        if joined >= 2:
            findings["metacarpals_joined"] = joined
    mc2 = labels == chosen
    if active_contour:
        mc2 = refine_active_contour(mc2, density, spacing)
    return mc2


def classical_probability(density: np.ndarray, spacing, findings: dict | None = None) -> np.ndarray:
    """Pipeline hook: a 0/1 float map on the working grid (interpolated back, then thresholded)."""
    return classical_mask(density, spacing, findings=findings).astype(np.float32)
