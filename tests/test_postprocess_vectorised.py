"""The vectorised post-processing (all slices at once, on bounding boxes) gives the very voxels of the
slice-by-slice definition in tests/_postprocess_reference.py."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import _postprocess_reference as reference
from napari_vbmd.segmentation import postprocess as post

from _segmentation_synthetic import synthetic_mcp


def _noisy_masks(seed: int):
    """Blobs with holes, islands and touching slice borders, and a scan's densities to refine against."""
    scan, truth = synthetic_mcp(shape=(20, 90, 110), spacing=0.082)
    rng = np.random.default_rng(seed)
    density = scan.density()
    noise = ndimage.gaussian_filter(rng.normal(size=truth.shape), (0, 2, 2))
    grown = ndimage.binary_dilation(truth, iterations=2) & (noise > -0.25)
    grown[:, :3, 40:60] = True  # reaches the crop's border
    grown[5:8, 70:75, 90:95] = True  # an island
    grown[2] = False  # an empty slice
    return grown, density


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hole_filling_and_largest_component_match_the_slice_by_slice_definition(seed):
    mask, _ = _noisy_masks(seed)
    filled = post.fill_holes_per_slice(mask)
    assert np.array_equal(filled, reference.fill_holes_per_slice(mask))
    assert np.array_equal(post.keep_largest_component(filled), reference.keep_largest_component(filled))
    empty = np.zeros((3, 8, 8), bool)
    assert not post.fill_holes_per_slice(empty).any() and not post.keep_largest_component(empty).any()


@pytest.mark.parametrize("band", [0.1, 0.25, 0.6, 2.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_boundary_refinement_matches_the_slice_by_slice_definition(seed, band):
    mask, density = _noisy_masks(seed)
    mask = reference.keep_largest_component(reference.fill_holes_per_slice(mask))
    spacing = (0.082, 0.082, 0.09)  # unequal in-plane spacing: an elliptic footprint in voxels
    expected = reference.refine_boundary(mask, density, spacing, band)
    assert np.array_equal(post.refine_boundary(mask, density, spacing, band), expected)


@pytest.mark.parametrize("size", [1, 3, 7, 13, 31])
def test_sliding_windows_equal_scipys_filters(size):
    values = np.random.default_rng(size).normal(size=(3, 17, 40)).astype(np.float32)
    for axis in (1, 2):
        assert np.array_equal(post.sliding(values, size, axis, np.maximum),
                              ndimage.maximum_filter1d(values, size, axis=axis, mode="reflect"))
        assert np.array_equal(post.sliding(values, size, axis, np.minimum),
                              ndimage.minimum_filter1d(values, size, axis=axis, mode="reflect"))
        binary = values > 0.5
        assert np.array_equal(post.sliding(binary, size, axis, np.logical_or, "constant", False),
                              ndimage.maximum_filter1d(binary.view(np.uint8), size, axis=axis, mode="constant").view(bool))


@pytest.mark.parametrize("threads", [2, 3])
def test_groups_of_slices_on_threads_give_the_same_voxels(threads):
    from napari_vbmd.segmentation import stages
    from napari_vbmd.segmentation.preprocess import Box

    mask, _ = _noisy_masks(0)
    assert np.array_equal(post.fill_holes_per_slice(mask, threads), reference.fill_holes_per_slice(mask))
    scan, _ = synthetic_mcp(shape=(20, 90, 110), spacing=0.082)
    cleaned = reference.keep_largest_component(reference.fill_holes_per_slice(mask))
    box = Box(0, 20, 0, 90, 0, 110)
    one = stages._refine(scan, box, cleaned, 0.25, threads=1)
    assert np.array_equal(one, reference.keep_largest_component(
        reference.refine_boundary(cleaned, scan.density(), scan.spacing, 0.25)))
    assert np.array_equal(stages._refine(scan, box, cleaned, 0.25, threads=threads), one)
