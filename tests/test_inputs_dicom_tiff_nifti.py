"""Issue 21: DICOM series that do not hold together (item 4), TIFFs without a volume or a voxel size
(5), NaN voxels in a NIfTI (3), malformed metadata that was an internal error (10)."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_vbmd import Scan, VbmdError
from napari_vbmd.io import read_scan, write_mask
from napari_vbmd.scan import apply_user_spacing

from _inputs_helpers import assert_refused, dicom_series, json_of, run_cli


# -- item 4: DICOM ----------------------------------------------------------------------------------------
def test_a_truncated_slice_refuses_the_series(tmp_path):
    folder = dicom_series(tmp_path / "s", n=8)
    assert read_scan(folder).shape[0] == 8
    victim = folder / "slice003.dcm"
    victim.write_bytes(victim.read_bytes()[:300])
    with pytest.raises(VbmdError, match="cannot be read as DICOM") as info:
        read_scan(folder)
    assert "slice003.dcm" in str(info.value)  # was: 7 of 8 slices, without a word


def test_a_truncated_real_slice_refuses_the_series(dicom_dir, tmp_path):
    import shutil

    folder = tmp_path / "elscint"
    shutil.copytree(dicom_dir, folder)
    victim = sorted(folder.iterdir())[4]
    victim.write_bytes(victim.read_bytes()[:200])
    with pytest.raises(VbmdError, match=f"{victim.name}: looks like a slice of the series"):
        read_scan(folder)


@pytest.mark.parametrize("keyword, value, words", [
    ("PixelSpacing", [0.6, 0.6], r"pixel spacing \[0.6, 0.6\] differs from the series' first slice \(\[0.5, 0.5\]\)"),
    ("ImageOrientationPatient", [0, 1, 0, 1, 0, 0], r"orientation \[0, 1, 0, 1, 0, 0\] differs"),
])
def test_slices_that_disagree_are_refused(tmp_path, keyword, value, words):
    def edit(k, ds):
        if k == 2:
            setattr(ds, keyword, value)

    with pytest.raises(VbmdError, match=words):
        read_scan(dicom_series(tmp_path / "s", edit=edit))


@pytest.mark.parametrize("keyword, value, words", [
    ("ImageOrientationPatient", [4, 0, 0, 0, 4, 0], "lengths 4 and 4, not 1"),
    ("ImageOrientationPatient", [1, 0, 0, 0, 1], "ImageOrientationPatient has 5 value(s); 6 are needed"),
    ("ImageOrientationPatient", [1, 0, 0, 1, 0, 0], "not at right angles"),
    ("PixelSpacing", [0.5], "PixelSpacing has 1 value(s); 2 are needed"),
    ("PixelSpacing", [-0.5, 0.5], "is not positive"),
    ("ImagePositionPatient", [0, 0], "ImagePositionPatient has 2 value(s); 3 are needed"),
])
def test_malformed_geometry_is_one_line(tmp_path, capsys, keyword, value, words):
    folder = dicom_series(tmp_path / "s", edit=lambda k, ds: setattr(ds, keyword, value))
    assert_refused(capsys, "info", folder, words=words)


def test_missing_pixel_spacing_is_unknown_not_1_mm(tmp_path, capsys):
    folder = dicom_series(tmp_path / "s", edit=lambda k, ds: delattr(ds, "PixelSpacing"))
    scan = read_scan(folder)
    assert not scan.spacing_known and "PixelSpacing" in scan.header["spacing_note"]
    code, out, _ = run_cli(capsys, "info", folder)
    assert code == 0 and "unknown (the slices have no PixelSpacing" in out
    assert json_of(run_cli(capsys, "info", folder, "--json")[1])["spacing_mm"] == "unknown"
    with pytest.raises(VbmdError, match="voxel size is unknown; give it"):  # never written as if 1 mm were true
        write_mask(tmp_path / "m.nii.gz", scan.with_data((scan.data > 0).astype(np.uint8), kind="mask"))
    known = apply_user_spacing(scan, (1.0, 0.4, 0.4))
    mask = write_mask(tmp_path / "m.nii.gz", known.with_data((known.data > 0).astype(np.uint8), kind="mask"))
    assert_refused(capsys, "measure", folder, mask, "--slope", "1", "--intercept", "0", words="voxel size is unknown")
    code, out, _ = run_cli(capsys, "measure", folder, mask, "--slope", "1", "--intercept", "0",
                           "--spacing", "1", "0.4", "0.4", "--json")
    payload = json_of(out)
    assert code == 0 and payload["spacing_mm"] == [1.0, 0.4, 0.4]
    assert payload["volume_mm3"] == pytest.approx(payload["n_voxels"] * 0.16)
    assert any("--spacing" in note for note in payload["notes"])


# -- item 5: TIFF -----------------------------------------------------------------------------------------
def test_a_2d_rgb_tiff_is_not_a_volume(tmp_path, capsys):
    path = tmp_path / "photo.tif"
    tifffile.imwrite(str(path), np.zeros((200, 160, 3), np.uint8), photometric="rgb")
    assert_refused(capsys, "info", path, words="3 colour samples (RGB) per pixel")


def test_tiff_without_readable_spacing_is_unknown_until_given(tmp_path, capsys):
    path = tmp_path / "stack.tif"
    data = np.full((4, 10, 12), 500, np.int16)
    tifffile.imwrite(str(path), data, description=json.dumps({"spacing": "a"}), metadata=None,
                     photometric="minisblack")
    code, out, _ = run_cli(capsys, "info", path)
    assert code == 0 and "spacing mm (z, y, x)  unknown" in out and "give --spacing Z Y X" in out
    mask = tmp_path / "mask.tif"
    tifffile.imwrite(str(mask), (data > 0).astype(np.uint8), photometric="minisblack")
    assert_refused(capsys, "measure", path, mask, "--units", "mg_ha_cm3", words="voxel size is unknown")
    code, out, _ = run_cli(capsys, "measure", path, mask, "--units", "mg_ha_cm3", "--spacing", "0.1", "0.1", "0.1",
                           "--json")
    assert code == 0 and json_of(out)["volume_mm3"] == pytest.approx(480 * 0.001)
    assert_refused(capsys, "segment", path, "-o", tmp_path / "out.nii.gz", "--units", "mg_ha_cm3",
                   "--model", "classical", words="voxel size is unknown")


def test_a_stated_spacing_is_never_replaced(tmp_path):
    scan = Scan(np.zeros((2, 3, 4)), spacing=(0.082,) * 3, unit="mg_ha_cm3")
    assert apply_user_spacing(scan, (0.082, 0.082, 0.082)) is scan
    with pytest.raises(VbmdError, match="contradicts it"):
        apply_user_spacing(scan, (1, 1, 1))
    with pytest.raises(VbmdError, match=r"contradicts it \(the form's Voxel size is for files without one\)"):
        apply_user_spacing(scan, (1, 1, 1), said_by="the form's Voxel size")


def test_every_answer_can_say_where_its_calibration_and_voxel_size_came_from():
    from napari_vbmd.scan import Calibration, apply_user_calibration, calibration_line, spacing_line

    cal = Calibration(density_slope=1441.13599, density_intercept=-356.445007, mu_scaling=8192.0)
    filed = Scan(np.zeros((2, 3, 4), np.int16), spacing=(0.082,) * 3, calibration=cal, unit="native")
    assert calibration_line(filed) == "density = stored value * 0.17592 + -356.445 (file)"
    assert spacing_line(filed) == "0.082 x 0.082 x 0.082 mm (file)"
    bare = Scan(np.zeros((2, 3, 4), np.int16), spacing=(1.0,) * 3, header={"spacing_known": False})
    assert calibration_line(bare) == "- (none)" and spacing_line(bare) == "unknown"
    said = apply_user_spacing(bare, (0.5, 0.1, 0.1), said_by="the form's Voxel size")
    assert spacing_line(said) == "0.5 x 0.1 x 0.1 mm (user (the form's Voxel size))"
    assert calibration_line(apply_user_calibration(bare, units="mg_ha_cm3")) == "values are mg HA/cm3 (user)"
    assert calibration_line(apply_user_calibration(bare, slope=2.0, intercept=-10)) == \
        "density = stored value * 2 + -10 (user)"


@pytest.mark.parametrize("description, outcome", [
    ({"spacing_mm": ["a", 1, 1]}, "unknown"),
    ({"spacing_mm": [0, 1, 1]}, "unknown"),
    ({"spacing_mm": [1, 1]}, "unknown"),
    ({"spacing_mm": "0.1"}, "unknown"),
    ({"spacing_mm": [0.1, 0.1, 0.1], "origin_mm": ["x", 0, 0]}, "origin_mm"),
    ({"spacing_mm": [0.1, 0.1, 0.1], "origin_mm": 5}, "origin_mm"),
    ({"spacing_mm": [0.1, 0.1, 0.1], "unit": ["mg_ha_cm3"]}, "known"),
])
def test_non_numeric_tiff_metadata_is_one_line_or_unknown(tmp_path, capsys, description, outcome):
    """Seven files that were internal errors (float('a') in the reader)."""
    path = tmp_path / "meta.tif"
    tifffile.imwrite(str(path), np.ones((2, 3, 4), np.uint8), description=json.dumps(description), metadata=None,
                     photometric="minisblack")
    if outcome == "origin_mm":
        assert_refused(capsys, "info", path, words="origin_mm")
    else:
        code, out, _ = run_cli(capsys, "info", path, "--json")
        assert code == 0
        assert (json_of(out)["spacing_mm"] == "unknown") == (outcome == "unknown")


def test_imagej_unit_and_spacing_must_both_be_there(tmp_path):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(str(path), np.zeros((3, 4, 5), np.uint16), imagej=True, resolution=(1 / 82.0, 1 / 82.0),
                     metadata={"spacing": "x", "unit": "um", "axes": "ZYX"})
    scan = read_scan(path)
    assert not scan.spacing_known and "'x' is not a number" in scan.header["spacing_note"]


def test_napari_reader_names_an_unknown_voxel_size(tmp_path):
    from napari_vbmd._reader import read_layers
    from napari_vbmd.layers import layer_to_scan

    path = tmp_path / "stack.tif"
    tifffile.imwrite(str(path), np.full((3, 4, 5), 7, np.int16), description=json.dumps({"spacing": "a"}),
                     metadata=None, photometric="minisblack")
    (data, kwargs, kind), = read_layers(str(path))
    assert kwargs["name"].endswith("(voxel size unknown)") and kwargs["scale"] == (1.0, 1.0, 1.0)
    assert not layer_to_scan(data, kwargs["metadata"], kwargs["scale"]).spacing_known
    rescaled = layer_to_scan(data, kwargs["metadata"], (0.5, 0.1, 0.1))  # the user set the layer's scale
    assert rescaled.spacing_known and rescaled.spacing == (0.5, 0.1, 0.1)


# -- items 3 and 10: NIfTI --------------------------------------------------------------------------------
def test_a_nan_voxel_inside_the_mask_is_refused(tmp_path, capsys):
    data = np.full((6, 8, 10), 300.0, np.float32)
    data[3, 4, 5] = np.nan
    image = Scan(data, spacing=(0.1,) * 3, unit="mg_ha_cm3")
    from napari_vbmd.io import write_image

    path = write_image(tmp_path / "nan.nii.gz", image)
    mask = write_mask(tmp_path / "mask.nii.gz", image.with_data(np.ones(data.shape, np.uint8), kind="mask"))
    err = assert_refused(capsys, "measure", path, mask, words="1 of the 480 voxels inside the mask are not finite")
    assert str(path) in err


def test_a_4_channel_nifti_is_one_line(tmp_path, capsys):
    path = tmp_path / "rgba.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((5, 6, 7, 4), np.float32), np.eye(4)), str(path))
    mask = tmp_path / "m.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((5, 6, 7), np.uint8), np.eye(4)), str(mask))
    assert_refused(capsys, "measure", path, mask, words="4-D (4 values per voxel)")
    vector = tmp_path / "vector.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((5, 6, 7, 1, 3), np.float32), np.eye(4)), str(vector))
    assert_refused(capsys, "info", vector, words="5-D")


def test_nifti_in_micrometres_is_converted_to_mm(tmp_path):
    img = nib.Nifti1Image(np.zeros((5, 6, 7), np.float32), np.diag([82.0, 82.0, 82.0, 1.0]))
    img.header.set_xyzt_units("micron")
    nib.save(img, str(tmp_path / "um.nii.gz"))
    assert read_scan(tmp_path / "um.nii.gz").spacing == pytest.approx((0.082,) * 3)


def test_a_zero_nifti_voxel_size_is_unknown_not_1_mm(tmp_path, capsys):
    """nibabel reads pixdim 0 as 1 mm (with a log line); with no sform that is the file's only voxel size."""
    import gzip
    import struct

    nib.save(nib.Nifti1Image(np.full((3, 4, 5), 100, np.float32), np.eye(4)), str(tmp_path / "a.nii"))
    raw = bytearray((tmp_path / "a.nii").read_bytes())
    struct.pack_into("<f", raw, 80, 0.0)  # pixdim[1]
    struct.pack_into("<2h", raw, 252, 0, 0)  # no qform, no sform
    (tmp_path / "zero.nii.gz").write_bytes(gzip.compress(bytes(raw)))
    scan = read_scan(tmp_path / "zero.nii.gz")
    assert not scan.spacing_known and "pixdim) is 0, 1, 1" in scan.header["spacing_note"]
    code, out, err = run_cli(capsys, "info", tmp_path / "zero.nii.gz")
    assert code == 0 and "unknown (its header's voxel size" in out and err == ""  # nibabel's log line silenced
