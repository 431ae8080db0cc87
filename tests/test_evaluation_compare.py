"""Comparing two masks of one scan (the engine behind the napari compare widget)."""
from __future__ import annotations

import numpy as np
import pytest

from napari_vbmd import Calibration, Scan
from napari_vbmd.errors import VbmdError
from napari_vbmd.evaluation.compare import ADDED, MISSING, compare_masks
from napari_vbmd.measure import measure_vbmd

CAL = Calibration(density_slope=1600.0, density_intercept=-400.0, mu_scaling=8192)


@pytest.fixture
def scan():
    data = np.full((8, 40, 40), 2000, np.int16)
    data[:, 10:30, 10:30] = 4000
    return Scan(data=data, spacing=(0.1, 0.2, 0.2), origin=(1.0, 2.0, 3.0), calibration=CAL, unit="native")


def _mask(scan, box, origin=None, shape=None):
    data = np.zeros(shape or scan.shape, np.uint8)
    data[box] = 1
    return Scan(data=data, spacing=scan.spacing, origin=origin or scan.origin, kind="mask")


def test_metrics_vbmd_and_difference(scan):
    reference = _mask(scan, np.s_[:, 10:30, 10:30])
    predicted = _mask(scan, np.s_[:, 10:30, 12:32])  # shifted 2 voxels (0.4 mm) along x
    result = compare_masks(reference, predicted, scan)
    assert result.metrics["dice"] == pytest.approx(18 / 20)
    assert result.metrics["hausdorff_mm"] == pytest.approx(0.4)
    assert result.metrics["volume_difference_mm3"] == 0
    assert np.count_nonzero(result.difference == ADDED) == 8 * 20 * 2
    assert np.count_nonzero(result.difference == MISSING) == 8 * 20 * 2
    assert result.difference[0, 15, 31] == ADDED and result.difference[0, 15, 10] == MISSING
    assert result.vbmd_reference.d100_mg_ha_cm3 == pytest.approx(4000 * 1600 / 8192 - 400)
    expected = measure_vbmd(scan, predicted).d100_mg_ha_cm3
    assert result.vbmd_predicted.d100_mg_ha_cm3 == pytest.approx(expected)
    rows = dict(result.summary_rows())
    assert rows["Dice"] == "0.9000" and rows["Added voxels"] == "320"
    assert float(rows["D100 difference (pred − ref)"]) == pytest.approx(expected - result.vbmd_reference.d100_mg_ha_cm3, abs=0.01)


def test_a_cropped_mask_is_placed_by_geometry(scan):
    reference = _mask(scan, np.s_[:, 10:30, 10:30])
    crop = _mask(scan, np.s_[:, 5:25, 5:25], origin=(1.0, 3.0, 4.0), shape=(8, 30, 30))  # offset 5 voxels in y, x
    result = compare_masks(reference, crop, scan)
    assert result.metrics["dice"] == 1.0 and not result.difference.any()


def test_without_a_scan_and_errors(scan):
    reference = _mask(scan, np.s_[:, 10:30, 10:30])
    empty = _mask(scan, np.s_[0:0])
    result = compare_masks(reference, empty)
    assert result.vbmd_reference is None and result.vbmd_errors["reference"] == "no scan"
    assert result.metrics["dice"] == 0
    with_scan = compare_masks(reference, empty, scan)
    assert "empty" in with_scan.vbmd_errors["predicted"] and with_scan.vbmd_reference is not None
    other = Scan(data=np.zeros((8, 40, 40), np.uint8), spacing=(0.1, 0.3, 0.3), kind="mask")
    with pytest.raises(VbmdError, match="different grids"):
        compare_masks(reference, other)
    with pytest.raises(VbmdError, match="predicted mask: .*voxel size"):
        compare_masks(reference, other, scan)
