"""The real Scanco and DICOM files in ../shared/data: shape, spacing, position, calibration."""
from __future__ import annotations

import numpy as np
import pytest
import py_aimio

from napari_vbmd.io import read_mask, read_scan, write_mask
from napari_vbmd.io.aim import MASK_VALUE, calibration_from_log
from napari_vbmd.measure import measure_vbmd

pytestmark = pytest.mark.shared_data

XT1 = dict(density_slope=1441.13599, density_intercept=-356.445007, mu_scaling=8192.0, mu_water=0.2464)
XT2 = dict(density_slope=1632.71997, density_intercept=-396.135986, mu_scaling=8192.0, mu_water=0.2402)


def test_aluminum_greyscale_xtremect1(scanco_dir):
    scan = read_scan(scanco_dir / "aluminum.aim")
    assert scan.kind == "image" and scan.unit == "native"
    assert scan.shape == (100, 130, 130)  # (z, y, x) of a 130 x 130 x 100 (x, y, z) header
    assert scan.data.dtype == np.int16
    assert np.allclose(scan.spacing, 0.082, atol=1e-6)
    # position (684, 702, 9) voxels in (x, y, z) -> origin (z, y, x) in mm
    assert np.allclose(scan.origin, (9 * 0.082, 702 * 0.082, 684 * 0.082), atol=1e-5)
    assert scan.header["position"] == (684, 702, 9)
    assert scan.calibration.to_dict() == pytest.approx(XT1)


def test_aluminum_density_formula(scanco_dir):
    scan = read_scan(scanco_dir / "aluminum.aim")
    native = scan.data[50, 60:62, 60:62].astype(np.float64)
    expected = native * (1441.13599 / 8192) - 356.445007
    assert np.allclose(scan.density()[50, 60:62, 60:62], expected, atol=1e-3)
    hu_expected = native * 1000 / (8192 * 0.2464) - 1000
    assert np.allclose(scan.hounsfield()[50, 60:62, 60:62], hu_expected, atol=1e-2)


def test_xtremect2_segmentation_is_a_mask_with_calibration(scanco_dir):
    mask = read_scan(scanco_dir / "XT2_RADIUS_82_SEG.AIM")
    assert mask.kind == "mask"
    assert mask.shape == (123, 364, 420)
    assert mask.header["position"] == (694, 718, 0)
    assert set(np.unique(mask.data)) == {0, 1}
    assert mask.calibration.to_dict() == pytest.approx(XT2)


@pytest.mark.parametrize(
    "name, shape, spacing",
    [("test25a.aim", (25, 25, 25), 0.034), ("tube.aim", (193, 64, 64), 0.034)],
)
def test_old_binary_aims(scanco_dir, name, shape, spacing):
    mask = read_scan(scanco_dir / name)
    assert mask.kind == "mask" and mask.shape == shape
    assert np.allclose(mask.spacing, spacing, atol=1e-6)
    assert mask.data.any()


def test_test25a_has_mu_scaling_but_no_density_calibration(scanco_dir):
    scan = read_scan(scanco_dir / "test25a.aim")
    assert "Mu_Scaling" in scan.header["processing_log"]
    assert scan.calibration is None


def test_mask_written_by_us_reads_back_identical_in_aimio(scanco_dir, tmp_path):
    source = read_scan(scanco_dir / "XT2_RADIUS_82_SEG.AIM")
    out = write_mask(tmp_path / "copy_mask.aim", source)
    array, meta = py_aimio.read_aim(str(out))
    assert np.array_equal(array != 0, source.data.astype(bool))
    assert set(np.unique(array)) == {0, MASK_VALUE}
    assert tuple(meta["position"]) == (694, 718, 0)
    log = py_aimio.aim_info(str(out))["processing_log"]  # as stored (read_aim re-renders it)
    original = source.header["processing_log"]
    assert log.startswith(original.rstrip("\n"))  # the parent's log is kept whole
    assert "napari-vbmd" in log and "togobj_from_aim" in log
    assert calibration_from_log(log).to_dict() == pytest.approx(XT2)


def test_mask_of_greyscale_scan_keeps_calibration_lines(scanco_dir, tmp_path):
    image = read_scan(scanco_dir / "aluminum.aim")
    mask = image.with_data((image.density() > 400).astype(np.uint8), kind="mask", unit="unknown")
    out = write_mask(tmp_path / "alu_mask.aim", mask, parent=image)
    array, meta = py_aimio.read_aim(str(out))
    assert np.array_equal(array == MASK_VALUE, mask.data.astype(bool))
    assert calibration_from_log(py_aimio.aim_info(str(out))["processing_log"]).to_dict() == pytest.approx(XT1)
    back = read_mask(out, like=image)
    assert np.array_equal(back.data, mask.data)
    result = measure_vbmd(image, back)
    inside = image.data[mask.data.astype(bool)].astype(np.float64) * (1441.13599 / 8192) - 356.445007
    assert result.d100_mg_ha_cm3 == pytest.approx(inside.mean(), rel=1e-12)


def test_cropped_mask_aligns_by_position(scanco_dir, tmp_path):
    image = read_scan(scanco_dir / "aluminum.aim")
    full = np.zeros(image.shape, np.uint8)
    full[20:60, 30:90, 40:100] = 1
    cropped = image.with_data(
        full[20:60, 30:90, 40:100],
        kind="mask",
        unit="unknown",
        origin=tuple(o + i * s for o, i, s in zip(image.origin, (20, 30, 40), image.spacing)),
    )
    out = write_mask(tmp_path / "cropped.aim", cropped, parent=image)
    meta = py_aimio.aim_info(str(out))
    assert tuple(meta["position"]) == (684 + 40, 702 + 30, 9 + 20)
    aligned = read_mask(out, like=image)
    assert np.array_equal(aligned.data, full)


def test_dicom_series_without_preamble(dicom_dir):
    scan = read_scan(dicom_dir)
    assert scan.shape == (8, 512, 512)
    # spacing from the image positions (3.0 mm apart), not the SliceThickness tag (2.7 mm)
    assert scan.spacing == pytest.approx((3.0, 0.84, 0.84))
    assert scan.header["slice_thickness_tag"] == pytest.approx(2.7)
    assert scan.origin == pytest.approx((-1393.9, -195.1, -215.0))
    assert scan.unit == "hu"  # rescale slope 1, intercept -1000 applied
    assert scan.data.min() == -1000
    assert scan.calibration is None


def test_dicom_single_file_reads_as_one_slice(dicom_dir):
    first = sorted(dicom_dir.iterdir())[0]
    scan = read_scan(first)
    assert scan.shape == (1, 512, 512)
