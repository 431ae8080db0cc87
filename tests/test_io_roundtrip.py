"""Writers and readers agree: voxels, geometry and calibration survive every format."""
from __future__ import annotations

import numpy as np
import pytest

from napari_vbmd import Calibration, Scan, VbmdError
from napari_vbmd.io import read_mask, read_scan, write_image, write_mask
from napari_vbmd.io.aim import validate_aim_header, write_aim
from napari_vbmd.measure import measure_vbmd

CAL = Calibration(density_slope=1441.13599, density_intercept=-356.445007, mu_scaling=8192, mu_water=0.2464)


def make_scan(shape=(6, 20, 24), origin_index=(3, 100, 120), spacing=0.082, hand="left"):
    rng = np.random.default_rng(0)
    data = rng.integers(-500, 6000, size=shape, dtype=np.int16)
    return Scan(
        data=data,
        spacing=(spacing,) * 3,
        origin=tuple(i * spacing for i in origin_index),
        calibration=CAL,
        unit="native",
        hand=hand,
        source=None,
    )


def make_mask(scan):
    mask = np.zeros(scan.shape, np.uint8)
    mask[1:5, 4:15, 5:20] = 1
    return scan.with_data(mask, kind="mask", unit="unknown")


@pytest.mark.parametrize("version", [20, 30])
def test_aim_image_roundtrip(tmp_path, version):
    scan = make_scan()
    path = write_aim(tmp_path / "img.aim", scan, version=version)
    assert validate_aim_header(path)["version"] == version
    back = read_scan(path)
    assert np.array_equal(back.data, scan.data)
    assert back.spacing == pytest.approx(scan.spacing)
    assert back.origin == pytest.approx(scan.origin)
    assert back.calibration.to_dict() == pytest.approx(CAL.to_dict())
    assert back.hand == "left"


@pytest.mark.parametrize("version", [20, 30])
def test_aim_mask_roundtrip(tmp_path, version):
    scan = make_scan()
    mask = make_mask(scan)
    path = write_aim(tmp_path / "mask.aim", mask, parent=scan, version=version)
    back = read_scan(path)
    assert back.kind == "mask"
    assert np.array_equal(back.data, mask.data)
    assert back.origin == pytest.approx(scan.origin)


def test_float_density_aim_roundtrip(tmp_path):
    scan = make_scan()
    dens = scan.with_data(scan.density(), unit="mg_ha_cm3")
    back = read_scan(write_image(tmp_path / "dens.aim", dens))
    assert back.unit == "mg_ha_cm3"
    assert np.allclose(back.density(), scan.density(), atol=1e-3)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_roundtrip(tmp_path, suffix):
    scan = make_scan(spacing=0.061)
    back = read_scan(write_image(tmp_path / f"img{suffix}", scan))
    assert back.unit == "mg_ha_cm3"
    assert np.allclose(back.data, scan.density(), atol=1e-3)
    assert back.spacing == pytest.approx(scan.spacing, rel=1e-6)
    assert back.origin == pytest.approx(scan.origin, abs=1e-5)
    mask = make_mask(scan)
    mback = read_mask(write_mask(tmp_path / f"mask{suffix}", mask))
    assert np.array_equal(mback.data, mask.data)
    assert mback.origin == pytest.approx(scan.origin, abs=1e-5)


def test_nifti_from_elsewhere_has_unknown_units(tmp_path):
    import nibabel as nib

    affine = np.diag([0.5, 0.25, 2.0, 1.0])
    affine[:3, 3] = (10, 20, 30)
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6), np.int16), affine), str(tmp_path / "x.nii.gz"))
    scan = read_scan(tmp_path / "x.nii.gz")
    assert scan.shape == (6, 5, 4)
    assert scan.spacing == pytest.approx((2.0, 0.25, 0.5))
    assert scan.origin == pytest.approx((30, 20, 10))
    assert scan.unit == "unknown"
    with pytest.raises(VbmdError, match="no density calibration"):
        scan.density()


def test_tiff_roundtrip_keeps_spacing_and_origin(tmp_path):
    scan = make_scan()
    mask = make_mask(scan)
    back = read_mask(write_mask(tmp_path / "mask.tif", mask))
    assert np.array_equal(back.data, mask.data)
    assert back.spacing == pytest.approx(scan.spacing)
    assert back.origin == pytest.approx(scan.origin)


def test_imagej_tiff_spacing_is_read(tmp_path):
    import tifffile

    data = np.zeros((3, 4, 5), np.uint16)
    tifffile.imwrite(
        str(tmp_path / "ij.tif"), data, imagej=True, resolution=(1 / 82.0, 1 / 82.0),
        metadata={"spacing": 82.0, "unit": "um"},
    )
    scan = read_scan(tmp_path / "ij.tif")
    assert scan.spacing == pytest.approx((0.082, 0.082, 0.082))
    assert scan.unit == "unknown"


def test_writers_never_overwrite_the_input(tmp_path):
    scan = make_scan()
    path = write_aim(tmp_path / "scan.aim", scan)
    loaded = read_scan(path)
    before = path.read_bytes()
    with pytest.raises(VbmdError, match="overwrite an input"):
        write_image(path, loaded)
    with pytest.raises(VbmdError, match="overwrite an input"):
        write_mask(path, make_mask(loaded), parent=loaded)
    assert path.read_bytes() == before


def test_empty_mask_is_refused_and_nothing_written(tmp_path):
    scan = make_scan()
    empty = scan.with_data(np.zeros(scan.shape, np.uint8), kind="mask", unit="unknown")
    with pytest.raises(VbmdError, match="empty mask"):
        write_mask(tmp_path / "m.aim", empty, parent=scan)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_partial_file(tmp_path):
    scan = make_scan()
    scan.origin = (0.5 * 0.082, 0.0, 0.0)  # off the voxel grid: the AIM writer refuses
    with pytest.raises(VbmdError, match="voxel grid"):
        write_image(tmp_path / "x.aim", scan)
    assert list(tmp_path.iterdir()) == []


def test_unknown_output_extension(tmp_path):
    with pytest.raises(VbmdError, match="cannot write a mask as '.png'"):
        write_mask(tmp_path / "m.png", make_mask(make_scan()))


def test_measure_refuses_misaligned_and_mismatched_masks():
    scan = make_scan()
    mask = make_mask(scan)
    shifted = mask.with_data(mask.data, origin=(scan.origin[0] + 0.041, *scan.origin[1:]))
    with pytest.raises(VbmdError, match="not a whole number"):
        measure_vbmd(scan, shifted)
    other = mask.with_data(mask.data, spacing=(0.061,) * 3)
    with pytest.raises(VbmdError, match="voxel size"):
        measure_vbmd(scan, other)
    outside = mask.with_data(mask.data, origin=(scan.origin[0] + 5 * 0.082, *scan.origin[1:]))
    with pytest.raises(VbmdError, match="outside the scan"):
        measure_vbmd(scan, outside)
