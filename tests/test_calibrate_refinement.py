"""Choosing threshold, band and edge level on phantoms of the training generator
(benchmarks/calibrate_refinement.py over napari_vbmd.segmentation.calibrate)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from napari_vbmd.segmentation.checkpoint import read_config
from napari_vbmd.segmentation.models import DEFAULT_CHECKPOINT

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import calibrate_refinement  # noqa: E402


@pytest.mark.parametrize("bad", ["independent:70000:48", "broad:32000", "study:x:4", "study:5000:0"])
def test_a_bad_set_is_one_line_and_exit_2(bad, capsys, tmp_path):
    assert calibrate_refinement.main(["--set", bad, "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("calibrate_refinement: error: --set")
    assert not any(tmp_path.iterdir())  # nothing generated


def test_refuses_to_write_over_the_model_it_reads(tmp_path, capsys):
    copy = tmp_path / "copy"
    for suffix in (".json", ".safetensors"):
        shutil.copy(DEFAULT_CHECKPOINT.with_suffix(suffix), copy.with_suffix(suffix))
    before = copy.with_suffix(".json").read_bytes()
    assert calibrate_refinement.main(["--model", str(copy.with_suffix(".json")), "--set", "study:6400:1",
                                      "--cache", str(tmp_path / "cache"), "--out-checkpoint", str(copy)]) == 2
    assert "would write over the model read" in capsys.readouterr().err
    assert copy.with_suffix(".json").read_bytes() == before and not (tmp_path / "cache").exists()


def test_chooses_by_the_lines_and_writes_a_calibrated_copy(tmp_path, capsys):
    copy = tmp_path / "model" / "calibrated"
    copy.parent.mkdir()
    out_json = tmp_path / "calibration.json"
    code = calibrate_refinement.main([
        "--model", "default", "--set", "study:6400:1", "--cache", str(tmp_path / "cache"),
        "--thresholds", "0.4", "--bands", "0", "0.25", "--levels", "0.5", "0.65", "--threads", "1",
        "--json", str(out_json), "--out-checkpoint", str(copy)])
    assert code == 0
    assert sorted(p.name for p in copy.parent.iterdir()) == ["calibrated.json", "calibrated.onnx",
                                                             "calibrated.safetensors"]
    assert copy.with_suffix(".safetensors").read_bytes() == DEFAULT_CHECKPOINT.with_suffix(".safetensors").read_bytes()
    result = json.loads(out_json.read_text())
    # band 0 has no edge to place: one row; band 0.25 one per level
    assert [(r["threshold"], r["boundary_band_mm"], r["edge_level"]) for r in result["table"]] == [
        (0.4, 0.0, 0.5), (0.4, 0.25, 0.5), (0.4, 0.25, 0.65)]
    assert result["rule"] == "lines" and result["sets"] == ["study:6400:1"] and result["cases"] == ["heldout_6400"]
    best = max(result["table"], key=lambda r: (r["cases_within_lines"], -r["mean_abs_d100_error_pct"]))
    assert (result["threshold"], result["boundary_band_mm"], result["edge_level"]) == (
        best["threshold"], best["boundary_band_mm"], best["edge_level"])
    per_case = result["per_case"][0]
    assert per_case["case"] == "heldout_6400" and len(per_case["results"]) == 3
    for (t, b, f, dice, error), row in zip(per_case["results"], result["table"]):
        assert row["cases_within_lines"] == int(dice >= 0.97 and abs(error) <= 1.5)
    config = read_config(copy.with_suffix(".json"))
    assert (config.threshold, config.boundary_band_mm, config.edge_level) == (
        result["threshold"], result["boundary_band_mm"], result["edge_level"])
    assert "per_case" not in config.training["threshold_calibration"]
    # the record it replaces is kept: the checkpoint still says how the earlier setting was chosen
    shipped = json.loads(DEFAULT_CHECKPOINT.with_suffix(".json").read_text())["training"]["threshold_calibration"]
    assert config.training["earlier_threshold_calibrations"][-1] == shipped
    assert "chosen (lines)" in capsys.readouterr().out
