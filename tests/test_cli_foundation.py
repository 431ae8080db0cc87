"""`vbmd info` and `vbmd measure`: JSON keys, tables, one-line errors and exit codes."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from napari_vbmd import Calibration, Scan
from napari_vbmd.cli import main
from napari_vbmd.io import write_image, write_mask

CAL = Calibration(density_slope=1441.13599, density_intercept=-356.445007, mu_scaling=8192, mu_water=0.2464)


@pytest.fixture
def scan_and_mask(tmp_path):
    data = np.full((5, 12, 14), 3000, np.int16)
    data[:, 3:9, 4:10] = 6000
    scan = Scan(data=data, spacing=(0.082,) * 3, origin=(0.0, 0.82, 1.64), calibration=CAL, unit="native")
    mask = scan.with_data((data == 6000).astype(np.uint8), kind="mask", unit="unknown")
    image_path = write_image(tmp_path / "scan.aim", scan)
    mask_path = write_mask(tmp_path / "mask.aim", mask, parent=scan)
    return image_path, mask_path


def test_info_json_keys(scan_and_mask, capsys):
    image_path, _ = scan_and_mask
    assert main(["info", str(image_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == [5, 12, 14]
    assert info["spacing_mm"] == pytest.approx([0.082] * 3)
    assert info["origin_mm"] == pytest.approx([0.0, 0.82, 1.64])
    assert info["dtype"] == "int16"
    assert info["calibration"] == pytest.approx(CAL.to_dict())


def test_info_table(scan_and_mask, capsys):
    image_path, _ = scan_and_mask
    assert main(["info", str(image_path)]) == 0
    out = capsys.readouterr().out
    assert "5 x 12 x 14" in out and "slope 1441.13599" in out


def test_measure_json(scan_and_mask, capsys):
    image_path, mask_path = scan_and_mask
    assert main(["measure", str(image_path), str(mask_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    expected = 6000 * 1441.13599 / 8192 - 356.445007
    assert result["d100_mg_ha_cm3"] == pytest.approx(expected)
    assert result["sd_mg_ha_cm3"] == pytest.approx(0.0, abs=1e-9)
    assert result["n_voxels"] == 5 * 6 * 6
    assert result["volume_mm3"] == pytest.approx(180 * 0.082**3)
    assert result["n_slices"] == 5
    assert result["mean_slice_area_mm2"] == pytest.approx(36 * 0.082**2)
    assert len(result["profile"]["slice_index"]) == 5


def test_measure_table_and_profile(scan_and_mask, capsys):
    image_path, mask_path = scan_and_mask
    assert main(["measure", str(image_path), str(mask_path), "--profile", "--slices", "1:3"]) == 0
    out = capsys.readouterr().out
    assert "D100 (mg HA/cm3)" in out and "2 (1 to 2)" in out


def test_uncalibrated_nifti_needs_the_user_to_say(tmp_path, capsys):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.full((4, 4, 3), 250.0, np.float32), np.eye(4)), str(tmp_path / "d.nii.gz"))
    nib.save(nib.Nifti1Image(np.ones((4, 4, 3), np.uint8), np.eye(4)), str(tmp_path / "m.nii.gz"))
    assert main(["measure", str(tmp_path / "d.nii.gz"), str(tmp_path / "m.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert "no density calibration" in err and "d.nii.gz" in err
    assert main(["measure", str(tmp_path / "d.nii.gz"), str(tmp_path / "m.nii.gz"), "--units", "mg_ha_cm3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["d100_mg_ha_cm3"] == pytest.approx(250.0)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["info", "{tmp}/missing.aim"], "no such file"),
        (["measure", "{image}", "{image}"], "mask"),
        (["measure", "{image}", "{mask}", "--slices", "x"], "slice range"),
    ],
)
def test_errors_are_one_line_with_exit_2(scan_and_mask, tmp_path, argv, fragment):
    image_path, mask_path = scan_and_mask
    argv = [a.format(tmp=tmp_path, image=image_path, mask=mask_path) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "napari_vbmd.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert fragment in lines[0]


def test_atomic_outputs_get_the_umask_permissions_not_mkstemps_0600(tmp_path):
    import os
    import stat

    from napari_vbmd._atomic import write_text_atomic

    old = os.umask(0o022)
    try:
        target = write_text_atomic(tmp_path / "report.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


@pytest.mark.slow
def test_demo_segments_and_measures_the_phantom_close_to_its_truth(tmp_path, capsys):
    import json

    from napari_vbmd.cli import main

    assert main(["demo", str(tmp_path), "--no-viewer", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "default"
    if report["device"] == "cpu":  # on a CPU the bundled model runs from its export
        assert report["runtime"].startswith("onnxruntime")
    assert (report["hand"], report["hand_source"]) == ("right", "header")  # where the hand came from
    assert report["dice_vs_truth"] > 0.95
    assert abs(report["d100_error_percent"]) < 2.0
    assert (tmp_path / "phantom_mc2_mask.aim").is_file() and (tmp_path / "report.json").is_file()
