"""Segmentation metrics on shapes with known answers, checked against independent computations."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial import cKDTree

from napari_vbmd.errors import VbmdError
from napari_vbmd.evaluation.metrics import (
    confusion_counts,
    difference_labels,
    directed_surface_distances,
    per_slice_metrics,
    roc_auc,
    segmentation_metrics,
    surface,
    surface_distance_metrics,
)


def ball(shape, centre, radius_mm, spacing):
    grids = np.meshgrid(*[(np.arange(n) * s) for n, s in zip(shape, spacing)], indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grids, centre)) <= radius_mm**2


def lens_dice(radius, offset):
    """Dice of two continuous balls of equal radius whose centres are ``offset`` apart."""
    lens = math.pi * (4 * radius + offset) * (2 * radius - offset) ** 2 / 12
    return lens / (4 / 3 * math.pi * radius**3)


@pytest.mark.parametrize("spacing, axis", [((1.0, 1.0, 1.0), 2), ((0.5, 0.25, 0.25), 0)])
def test_offset_spheres_dice_and_hausdorff(spacing, axis):
    shape = (48, 96, 96) if spacing[0] == 0.5 else (48, 48, 48)
    radius = 8.0  # mm
    centre = np.array([n * s / 2 for n, s in zip(shape, spacing)])
    shift_voxels = 3
    a = ball(shape, centre, radius, spacing)
    b = np.roll(a, shift_voxels, axis=axis)  # the same voxel ball moved by exactly 3 voxels
    offset_mm = shift_voxels * spacing[axis]

    m = segmentation_metrics(a, b, spacing)
    # Exact for the voxelised balls: |A| = |B|, so Dice = |A∩B| / |A|.
    overlap = np.count_nonzero(a & b)
    assert m["dice"] == pytest.approx(overlap / np.count_nonzero(a))
    assert m["iou"] == pytest.approx(overlap / np.count_nonzero(a | b))
    # ... and close to the continuous lens formula.
    assert m["dice"] == pytest.approx(lens_dice(radius, offset_mm), abs=0.01)
    # A translated shape's Hausdorff distance is exactly the translation.
    assert m["hausdorff_mm"] == pytest.approx(offset_mm, abs=1e-9)
    assert m["hd95_mm"] <= offset_mm and m["assd_mm"] < offset_mm
    assert m["volume_difference_mm3"] == 0.0
    assert m["accuracy"] == pytest.approx(1 - np.count_nonzero(a ^ b) / a.size)


def test_surface_distances_match_a_brute_force_kd_tree():
    spacing = (0.7, 0.3, 0.4)
    shape = (30, 60, 50)
    a = ball(shape, (10.0, 9.0, 10.0), 5.0, spacing)
    b = ball(shape, (11.0, 9.5, 9.0), 4.2, spacing)
    m = surface_distance_metrics(a, b, spacing)
    pa = np.argwhere(surface(a)) * spacing
    pb = np.argwhere(surface(b)) * spacing
    d_ab = cKDTree(pb).query(pa)[0]
    d_ba = cKDTree(pa).query(pb)[0]
    assert m["hausdorff_mm"] == pytest.approx(max(d_ab.max(), d_ba.max()))
    assert m["hd95_mm"] == pytest.approx(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))
    assert m["assd_mm"] == pytest.approx(np.concatenate([d_ab, d_ba]).mean())
    ab, ba = directed_surface_distances(a, b, spacing)
    assert sorted(ab) == pytest.approx(sorted(d_ab))


def test_identical_masks_and_counts():
    a = ball((20, 20, 20), (10, 10, 10), 6, (1, 1, 1))
    m = segmentation_metrics(a, a, (1, 1, 1))
    assert m["dice"] == m["iou"] == m["accuracy"] == 1.0
    assert m["hausdorff_mm"] == m["hd95_mm"] == m["assd_mm"] == 0.0
    ref = np.zeros((1, 4, 4), bool)
    pred = np.zeros((1, 4, 4), bool)
    ref[0, :2, :2] = True  # 4 voxels
    pred[0, 1:3, 1:3] = True  # 4 voxels, 1 shared
    c = confusion_counts(ref, pred)
    assert c == {"tp": 1, "fp": 3, "fn": 3, "tn": 9}
    m = segmentation_metrics(ref, pred, (1, 1, 1))
    assert m["dice"] == pytest.approx(2 / 8) and m["iou"] == pytest.approx(1 / 7)
    assert m["accuracy"] == pytest.approx(10 / 16)


def test_empty_masks():
    empty = np.zeros((5, 5, 5), bool)
    some = empty.copy()
    some[2, 2, 2] = True
    with pytest.raises(VbmdError, match="both masks are empty"):
        segmentation_metrics(empty, empty, (1, 1, 1))
    m = segmentation_metrics(some, empty, (1, 1, 1))
    assert m["dice"] == 0 and m["iou"] == 0
    assert math.isnan(m["hausdorff_mm"]) and math.isnan(m["hd95_mm"]) and math.isnan(m["assd_mm"])
    assert m["volume_difference_percent"] == -100.0


def test_roc_auc_matches_sklearn_on_the_whole_field_of_view():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    ref = ball((16, 40, 40), (8, 20, 20), 7, (1, 1, 1))
    prob = np.clip(ref * 0.7 + rng.normal(0, 0.2, ref.shape), 0, 1).astype(np.float32)
    prob[0] = 0.0  # many exact ties below every positive
    assert roc_auc(ref, prob) == pytest.approx(roc_auc_score(ref.ravel(), prob.ravel()), abs=1e-12)
    assert roc_auc(ref, ref.astype(float)) == 1.0
    assert math.isnan(roc_auc(np.zeros_like(ref), prob))
    m = segmentation_metrics(ref, prob > 0.5, (1, 1, 1), probability=prob)
    assert m["auc"] == pytest.approx(roc_auc_score(ref.ravel(), prob.ravel()))


def test_per_slice_metrics_and_difference_labels():
    ref = np.zeros((4, 10, 10), bool)
    pred = np.zeros((4, 10, 10), bool)
    ref[1, 2:6, 2:6] = True
    pred[1, 2:6, 3:7] = True  # shifted by one pixel
    ref[2, 4:6, 4:6] = True  # missing in prediction
    rows = per_slice_metrics(ref, pred, (2.0, 0.5, 0.25))
    assert [r["slice"] for r in rows] == [1, 2]
    assert rows[0]["dice"] == pytest.approx(2 * 12 / 32)
    assert rows[0]["hausdorff_mm"] == pytest.approx(0.25)  # one pixel along x
    assert rows[0]["area_difference_mm2"] == 0
    assert rows[1]["dice"] == 0 and math.isnan(rows[1]["hd95_mm"])
    assert rows[1]["area_reference_mm2"] == pytest.approx(4 * 0.125)
    diff = difference_labels(ref, pred)
    assert np.count_nonzero(diff == 1) == 4 and np.count_nonzero(diff == 2) == 4 + 4
    assert diff[1, 2, 6] == 1 and diff[1, 2, 2] == 2
