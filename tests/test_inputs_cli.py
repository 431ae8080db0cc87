"""Issue 21, commands: calibration flags on calibrated files (item 2), FIFOs (8), outputs that cannot
be written (9), bad numbers that were internal errors (10, 12) and outputs over inputs (13)."""
from __future__ import annotations

import os

import pytest

from napari_vbmd.batch import discover_cases
from napari_vbmd.scan import apply_user_calibration

from _inputs_helpers import assert_refused, calibrated_pair, json_of, run_cli


@pytest.fixture
def pair(tmp_path):
    return calibrated_pair(tmp_path / "data")


# -- item 2 -----------------------------------------------------------------------------------------------
def test_calibration_flags_on_a_calibrated_file_are_refused_unless_overridden(pair, capsys):
    image, mask = pair
    code, out, _ = run_cli(capsys, "measure", image, mask, "--json")
    truth = json_of(out)["d100_mg_ha_cm3"]
    for flags in (["--units", "mg_ha_cm3"], ["--slope", "-1", "--intercept", "0"], ["--units", "native"]):
        err = assert_refused(capsys, "measure", image, mask, *flags, words="the file states its own calibration")
        assert "--override-calibration" in err
    code, out, _ = run_cli(capsys, "measure", image, mask, "--slope", "-1", "--intercept", "0", "--override-calibration",
                           "--json")
    payload = json_of(out)
    assert code == 0 and payload["d100_mg_ha_cm3"] != pytest.approx(truth)
    assert "overriding the file's (density slope 1441.14" in payload["calibration"]
    assert any("calibration: user, overriding" in note for note in payload["notes"])
    code, out, _ = run_cli(capsys, "measure", image, mask, "--slope", "-1", "--intercept", "0", "--override-calibration")
    assert "overriding the file's" in out  # the table says it too


def test_units_with_slope_is_refused(pair, capsys):
    image, mask = pair
    assert_refused(capsys, "measure", image, mask, "--units", "mg_ha_cm3", "--slope", "1", "--intercept", "0",
                   "--override-calibration", words="either --units or --slope/--intercept, not both")


def test_a_cohort_keeps_each_files_own_calibration(pair):
    from napari_vbmd.io import read_scan

    scan = read_scan(pair[0])
    kept = apply_user_calibration(scan, units="mg_ha_cm3", if_calibrated="keep")
    assert kept is scan and kept.unit == "native"


# -- item 8 -----------------------------------------------------------------------------------------------
FIFO_SCRIPT = """
import sys
from napari_vbmd.cli import main
image, *fifos = sys.argv[1:]
codes = [main(["info", fifo]) for fifo in fifos] + [main(["measure", image, fifos[0]])]
codes += [main(["agreement", fifos[0]]), main(["evaluate", "--cases", fifos[0], "-o", fifos[0] + ".out"])]
print(codes)
"""


def test_fifos_are_refused_by_every_reader_and_listed_by_batch(tmp_path):
    import subprocess
    import sys

    image, mask = calibrated_pair(tmp_path / "in")
    fifos = [tmp_path / "in" / name for name in ("f.aim", "f.nii.gz", "f.tif", "f.isq", "f.gobj", "f.dcm")]
    for fifo in fifos:
        os.mkfifo(fifo)
    # in a child with a time limit: each of these blocked forever before
    done = subprocess.run([sys.executable, "-c", FIFO_SCRIPT, str(image), *map(str, fifos)], capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.strip() == str([2] * 9), done.stderr
    assert done.stderr.count("FIFO (named pipe), not a regular file") == 9
    cases, ignored = discover_cases(tmp_path / "in")
    assert [c.file for c in cases] == ["scan.aim"]
    assert {"file": "f.aim", "reason": "is a FIFO (named pipe), not a regular file"} in ignored
    assert len([i for i in ignored if "FIFO" in i["reason"]]) == 6


# -- item 9 -----------------------------------------------------------------------------------------------
def test_an_unwritable_folder_names_the_users_path_not_a_temporary(tmp_path, capsys, monkeypatch):
    import tempfile

    from napari_vbmd.phantom import PhantomSpec, generate_phantom, write_phantom

    # a crop the classical method segments well, so the run gets as far as writing
    image = write_phantom(generate_phantom(PhantomSpec(seed=40, fov="cropped", n_slices=36, spacing_mm=0.25)), tmp_path,
                          "p")["image"]

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "out" / ".x.part.aim"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    (tmp_path / "out").mkdir()
    err = assert_refused(capsys, "segment", image, "-o", tmp_path / "out" / "mask.aim", "--model", "classical",
                         words="cannot write here (Permission denied)")
    assert str(tmp_path / "out" / "mask.aim") in err and ".part" not in err


def test_an_existing_file_as_output_folder_is_one_line(tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    for argv in (["demo", a_file, "--no-viewer", "--model", "classical"], ["phantom", a_file, "--quiet"],
                 ["train", tmp_path, "-o", a_file]):
        assert_refused(capsys, *argv, words="exists and is not a folder")
    assert a_file.read_text() == "not a folder"


# -- items 10 and 12 --------------------------------------------------------------------------------------
def test_train_refuses_impossible_numbers_before_writing_anything(tmp_path, capsys):
    out = tmp_path / "run"
    for flags, words in ((["--lr", "-1"], "learning rate (--lr) must be above 0"),
                         (["--lr", "nan"], "learning rate (--lr) must be a finite number"),
                         (["--patch", "16.5,16"], "--patch sizes must be whole numbers"),
                         (["--spacing-mm", "1e-4"], "working spacing (--spacing-mm) must be at least 0.05")):
        assert_refused(capsys, "train", tmp_path, "-o", out, *flags, words=words)
        assert not out.exists()  # no split.json left behind
    for flags in (["--threads", "0"], ["--batch-size", "0"], ["--threads", "-2"]):
        with pytest.raises(SystemExit) as info:
            run_cli(capsys, "train", tmp_path, "-o", out, *flags)
        assert info.value.code == 2 and "must be at least 1" in capsys.readouterr().err
    for argv in (["segment", tmp_path / "x.aim", "-o", tmp_path / "m.aim", "--threads", "0"],
                 ["ensemble", tmp_path / "a.json", tmp_path / "b.json", "-o", tmp_path / "e", "--threads", "0"]):
        with pytest.raises(SystemExit) as info:
            run_cli(capsys, *argv)
        assert info.value.code == 2 and "must be at least 1" in capsys.readouterr().err


def test_a_reversed_slice_range_says_so(pair, capsys):
    image, mask = pair
    assert_refused(capsys, "measure", image, mask, "--slices", "5:1", words="reversed: FIRST must be below LAST")
    assert_refused(capsys, "measure", image, mask, "--slices", "3:3", words="is empty")


# -- item 13 ----------------------------------------------------------------------------------------------
def test_batch_never_writes_among_its_inputs(tmp_path, capsys):
    """`vbmd batch T/masks T` wrote T/masks/<case>_mask.aim over a truth mask."""
    truth_dir = tmp_path / "T" / "masks"
    image, mask = calibrated_pair(truth_dir, name="case")
    before = {p.name: p.read_bytes() for p in truth_dir.iterdir()}
    assert_refused(capsys, "batch", truth_dir, tmp_path / "T", "--model", "classical", "--workers", "0",
                   words="outputs would land among the inputs")
    assert_refused(capsys, "batch", truth_dir / "..", tmp_path / "T", "--model", "classical", "--workers", "0",
                   words="must not be the input folder")
    assert {p.name: p.read_bytes() for p in truth_dir.iterdir()} == before


def test_train_never_writes_over_its_init_checkpoint(tmp_path, capsys):
    from napari_vbmd.segmentation.checkpoint import ModelConfig, save_checkpoint
    from napari_vbmd.segmentation.networks import build_network

    run = tmp_path / "R"
    run.mkdir()
    config_path, weights_path = save_checkpoint(run / "best", build_network("unet2d_small", base=4, depth=2),
                                                ModelConfig(architecture="unet2d_small", kwargs={"base": 4, "depth": 2}))
    before = config_path.read_bytes(), weights_path.read_bytes()
    for init in (config_path, run):
        assert_refused(capsys, "train", tmp_path, "-o", run, "--init", init, "--epochs", "1",
                       words="the run would write over it")
    assert (config_path.read_bytes(), weights_path.read_bytes()) == before
    assert sorted(p.name for p in run.iterdir()) == ["best.json", "best.safetensors"]


def test_the_shared_helper_protects_inputs_everywhere(tmp_path):
    from napari_vbmd import VbmdError
    from napari_vbmd._atomic import check_not_input, write_text_atomic

    victim = tmp_path / "input.txt"
    victim.write_text("keep")
    with pytest.raises(VbmdError, match="refusing to overwrite an input file"):
        write_text_atomic(victim, "gone", protect=[victim])
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(VbmdError, match="FIFO"):
        check_not_input(tmp_path / "pipe")
    assert victim.read_text() == "keep"
