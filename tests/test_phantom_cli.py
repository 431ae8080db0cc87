"""`vbmd phantom`: files per case, the index, JSON and table output, refusing to overwrite, errors."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from napari_vbmd.cli import build_parser, main
from napari_vbmd.io import read_mask, read_scan
from napari_vbmd.measure import measure_vbmd

SMALL = ["--slices", "24", "--spacing", "0.25"]


def test_writes_image_truth_mask_and_truth_json_per_case(tmp_path, capsys):
    out = tmp_path / "cohort"
    assert main(["phantom", str(out), "--n", "2", "--seed", "4", "--json", *SMALL]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert [case["name"] for case in report["cases"]] == ["phantom_4_000", "phantom_4_001"]
    assert "[2/2] wrote phantom_4_001" in captured.err  # progress goes to stderr, not into the JSON
    for case in report["cases"]:
        image = read_scan(case["image"])
        assert image.calibration is not None and image.data.dtype == np.int16
        assert image.shape == (24, 128, 160)
        truth = read_mask(case["mask"], like=image)
        info = json.loads(open(case["truth"]).read())
        assert info["d100_mg_ha_cm3"] == pytest.approx(case["d100_mg_ha_cm3"])
        assert measure_vbmd(image, truth).d100_mg_ha_cm3 == pytest.approx(info["d100_mg_ha_cm3"], abs=1e-3)
    with open(out / "cohort.csv", newline="") as f:
        index = list(csv.DictReader(f))
    assert [row["image"] for row in index] == ["phantom_4_000.aim", "phantom_4_001.aim"]
    assert float(index[0]["d100_mg_ha_cm3"]) == pytest.approx(report["cases"][0]["d100_mg_ha_cm3"])


def test_same_seed_gives_the_same_files(tmp_path, capsys):
    for name in ("a", "b"):
        assert main(["phantom", str(tmp_path / name), "--seed", "9", "--quiet", *SMALL]) == 0
    first = read_scan(tmp_path / "a" / "phantom_9_000.aim")
    second = read_scan(tmp_path / "b" / "phantom_9_000.aim")
    assert np.array_equal(first.data, second.data)


def test_options_reach_the_spec(tmp_path, capsys):
    out = tmp_path / "spec"
    assert main(["phantom", str(out), "--hand", "left", "--fov", "cropped", "--motion", "2", "--erosions", "1",
                 "--scanner", "xtremect2", "--d100", "250", "--json", "--quiet", *SMALL]) == 0
    [case] = json.loads(capsys.readouterr().out)["cases"]
    info = json.loads(open(case["truth"]).read())
    assert info["spec"] | {"seed": 0} == {
        "seed": 0, "hand": "left", "fov": "cropped", "n_slices": 24, "spacing_mm": 0.25, "motion_grade": 2,
        "erosions": 1, "d100_target": 250.0, "scanner": "xtremect2"}
    assert info["d100_mg_ha_cm3"] == pytest.approx(250.0, abs=1.0)
    assert len(info["design"]["erosions"]) == 1
    image = read_scan(case["image"])
    assert image.hand == "left"
    assert image.calibration.density_slope == pytest.approx(1632.71997)


def test_both_hands_are_mirror_pairs(tmp_path, capsys):
    out = tmp_path / "both"
    assert main(["phantom", str(out), "--hand", "both", "--json", "--quiet", *SMALL]) == 0
    names = [case["name"] for case in json.loads(capsys.readouterr().out)["cases"]]
    assert names == ["phantom_0_000_right", "phantom_0_000_left"]
    right = read_scan(out / "phantom_0_000_right.aim")
    left = read_scan(out / "phantom_0_000_left.aim")
    assert np.array_equal(left.data, right.data[:, :, ::-1])


def test_table_output(tmp_path, capsys):
    assert main(["phantom", str(tmp_path / "t"), "--seed", "2", "--quiet", *SMALL]) == 0
    out = capsys.readouterr().out
    header, row = out.splitlines()[:2]
    assert header.split()[:3] == ["name", "hand", "fov"] and "D100" in header
    assert row.startswith("phantom_2_000")
    assert "cohort.csv" in out


def test_refuses_to_overwrite_unless_asked(tmp_path, capsys):
    out = tmp_path / "again"
    assert main(["phantom", str(out), "--quiet", *SMALL]) == 0
    image = out / "phantom_0_000.aim"
    before = image.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["phantom", str(out), "--quiet", *SMALL]) == 2
    err = capsys.readouterr().err.strip()
    assert "phantom_0_000.aim" in err and "refusing to overwrite" in err and "\n" not in err
    assert image.stat().st_mtime_ns == before
    assert main(["phantom", str(out), "--quiet", "--overwrite", *SMALL]) == 0


@pytest.mark.parametrize("argv, words", [
    (["--slices", "2"], "number of slices"),
    (["--spacing", "3"], "spacing"),
    (["--erosions", "9"], "erosions"),
    (["--n", "0"], "number of phantoms"),
    (["--seed", "-1"], "seed"),
    (["--d100", "5000"], "D100"),
])
def test_bad_options_are_one_line_errors_and_write_nothing(tmp_path, capsys, argv, words):
    out = tmp_path / "bad"
    assert main(["phantom", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vbmd phantom: error:") and words in err and "\n" not in err
    assert not out.exists()


def test_too_few_slices_for_the_bone_is_refused(tmp_path, capsys):
    """Issue 21 item 12: the help's minimum is the true one (3 mm along the bones), said before any work."""
    assert main(["phantom", str(tmp_path / "short"), "--slices", "10", "--spacing", "0.082"]) == 2
    err = capsys.readouterr().err
    assert "spans 0.82 mm; a phantom needs at least 3 mm (37 slices at this spacing)" in err
    assert not (tmp_path / "short").exists()
    assert main(["phantom", str(tmp_path / "short"), "--slices", "49", "--spacing", "0.061"]) == 2
    assert "(50 slices at this spacing)" in capsys.readouterr().err
    help_text = build_parser()._subparsers._group_actions[0].choices["phantom"].format_help()
    assert "at least 3 mm to hold MC2 (37 slices at 82 um, 50 at 61 um)" in " ".join(help_text.split())


def test_the_documented_minimum_length_holds_mc2(tmp_path):
    """37 slices at 82 um (3.03 mm) hold MC2 (2.4-2.6 mm lost it in 46 of 120 phantoms)."""
    assert main(["phantom", str(tmp_path / "min"), "--slices", "37", "--seed", "1", "--quiet"]) == 0


def test_console_script_without_traceback(tmp_path):
    out_file = tmp_path / "a-file"
    out_file.write_text("not a folder")
    done = subprocess.run([sys.executable, "-m", "napari_vbmd.cli", "phantom", str(out_file), *SMALL],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "a-file" in done.stderr.splitlines()[-1]


def test_full_field_of_view_option(tmp_path, capsys):
    # coarse voxels keep it fast; the field is still the scanner's 126 mm
    out = tmp_path / "full"
    assert main(["phantom", str(out), "--fov", "full", "--slices", "12", "--spacing", "0.41", "--hand", "random",
                 "--json", "--quiet"]) == 0
    [case] = json.loads(capsys.readouterr().out)["cases"]
    image = read_scan(case["image"])
    assert image.shape == (12, 307, 307)
    assert 307 * 0.41 == pytest.approx(1536 * 0.082, abs=0.41)
    assert case["hand"] in ("left", "right") and image.hand == case["hand"]
