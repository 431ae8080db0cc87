"""Judging what is done to a model's probabilities (benchmarks/judge_probabilities.py): the kept
probabilities, finished by the pipeline's own stages, score as the pipeline's mask does."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_vbmd.evaluation.metrics import dice
from napari_vbmd.io import read_mask, read_scan
from napari_vbmd.measure import measure_vbmd
from napari_vbmd.segmentation.pipeline import segment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import judge_probabilities  # noqa: E402


def test_a_bad_set_or_model_is_one_line_and_exit_2(tmp_path, capsys):
    assert judge_probabilities.main(["score", "bogus:1", str(tmp_path), str(tmp_path / "x.csv"), "S:0.4:0.25"]) == 2
    assert judge_probabilities.main(["cache", "study:6400:1", str(tmp_path), "--model", "default"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "a set is" in err[0] and "LABEL=CHECKPOINT" in err[1]
    assert not (tmp_path / "x.csv").exists()


def test_kept_probabilities_score_as_the_pipeline_and_their_means_as_documented(tmp_path):
    phantoms, kept, out = tmp_path / "phantoms", tmp_path / "kept", tmp_path / "scores.csv"
    assert judge_probabilities.main(["cache", "study:6400:1", str(kept), "--model", "S=default", "--grid-phases",
                                     "--phantoms", str(phantoms)]) == 0
    stored = kept / "heldout_6400.npz"
    written = stored.stat().st_mtime_ns
    assert judge_probabilities.main(["cache", "study:6400:1", str(kept), "--model", "S=default",
                                     "--phantoms", str(phantoms)]) == 0
    assert stored.stat().st_mtime_ns == written  # a cached case is not run again
    assert judge_probabilities.main(["score", "study:6400:1", str(kept), str(out), "S:0.4:0.25", "S+S:0.4:0.25",
                                     "S@phases:0.4:0.25", "E:0.4:0.25", "--phantoms", str(phantoms)]) == 0
    rows = {r["model"]: r for r in csv.DictReader(out.open())}
    # the bundled model's own settings: what `vbmd segment` measures
    image = read_scan(phantoms / "heldout_6400.aim")
    truth = read_mask(phantoms / "heldout_6400_mask.aim", like=image).data.astype(bool)
    result = segment(image, model="default", threads=1)
    d100_truth = measure_vbmd(image, image.with_data(truth.astype(np.uint8), kind="mask")).d100_mg_ha_cm3
    d100 = measure_vbmd(image, result.mask).d100_mg_ha_cm3
    assert float(rows["S"]["dice"]) == pytest.approx(dice(truth, result.mask.data.astype(bool)), abs=1e-9)
    assert float(rows["S"]["d100_error_pct"]) == pytest.approx(100 * (d100 - d100_truth) / d100_truth, abs=1e-3)
    # the mean of a model with itself is the model; four phases of the grid are another reading, close to it
    assert (rows["S+S"]["dice"], rows["S+S"]["d100_error_pct"]) == (rows["S"]["dice"], rows["S"]["d100_error_pct"])
    with np.load(stored) as kept_arrays:
        assert not np.array_equal(kept_arrays["S@phases"], kept_arrays["S"])
        assert np.abs(kept_arrays["S@phases"].astype(int) - kept_arrays["S"]).mean() < 2
    assert abs(float(rows["S@phases"]["dice"]) - float(rows["S"]["dice"])) < 0.01
    # a model not cached is a miss with its reason, not a crash
    assert (float(rows["E"]["dice"]), rows["E"]["failure"]) == (0.0, "not cached")
