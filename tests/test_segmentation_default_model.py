"""The bundled default model end to end on phantoms it never saw (training used seeds 1000-1047)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from napari_vbmd.cli import main
from napari_vbmd.evaluation.metrics import dice
from napari_vbmd.io import read_mask
from napari_vbmd.measure import measure_vbmd
from napari_vbmd.phantom import PhantomSpec, generate_phantom, write_phantom
from napari_vbmd.segmentation.checkpoint import load_checkpoint
from napari_vbmd.segmentation.networks import count_parameters
from napari_vbmd.segmentation.pipeline import segment
from napari_vbmd.segmentation.models import DEFAULT_CHECKPOINT, load_model


@pytest.fixture(scope="module")
def default_model():
    return load_model("default", device="cpu")


def test_bundled_default_model_is_small_phantom_trained_and_documented(default_model):
    config = default_model.config
    assert config.name == "default" and config.architecture == "unet2d_small"
    assert "pairs.csv" in config.training["data"]
    assert DEFAULT_CHECKPOINT.with_suffix(".safetensors").stat().st_size < 5_000_000
    network, same = load_checkpoint(DEFAULT_CHECKPOINT, device="cpu")
    assert count_parameters(network) < 1_500_000
    card = DEFAULT_CHECKPOINT.with_suffix(".md").read_text()
    assert "fine-tune" in card and "phantom" in card and "scripts/train_default_model.sh" in card
    assert same.to_dict() == config.to_dict()
    assert default_model.runtime == "onnxruntime"  # its ONNX export is bundled beside it


@pytest.mark.parametrize("hand", ["left", "right"])
def test_default_model_on_an_unseen_coarse_phantom(default_model, hand):
    """Fast: 40 slices at 0.164 mm; the left hand comes back mirrored (not rotated) onto its truth."""
    phantom = generate_phantom(PhantomSpec(seed=6100, hand=hand, n_slices=40, spacing_mm=0.164, motion_grade=1))
    result = segment(phantom.image, model=default_model, threads=1)
    truth = phantom.truth.data.astype(bool)
    predicted = result.mask.data.astype(bool)
    assert result.hand == hand and result.hand_source == "header"
    score = dice(truth, predicted)
    assert score >= 0.9
    rotated = predicted[:, ::-1, ::-1]  # what the published pipeline returned for left hands
    assert dice(truth, rotated) < score - 0.3
    assert result.mask.spacing == phantom.image.spacing and result.mask.origin == phantom.image.origin


@pytest.mark.slow
@pytest.mark.parametrize("hand", ["left", "right"])
def test_default_model_end_to_end_at_native_resolution(default_model, hand, tmp_path, capsys):
    """110 native slices through `vbmd segment --model default`: Dice and D100 against the truth."""
    phantom = generate_phantom(PhantomSpec(seed=6200, hand=hand, n_slices=110, motion_grade=2, erosions=1))
    paths = write_phantom(phantom, tmp_path, f"unseen_{hand}")
    out = tmp_path / "predicted_mask.aim"
    code = main(["segment", str(paths["image"]), "-o", str(out), "--model", "default", "--device", "cpu",
                 "--threads", "2", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "default" and report["device"] == "cpu"
    predicted = read_mask(out, like=phantom.image).data.astype(bool)
    truth = phantom.truth.data.astype(bool)
    assert dice(truth, predicted) >= 0.95
    assert dice(truth, predicted[:, ::-1, ::-1]) < 0.5
    d100 = measure_vbmd(phantom.image, read_mask(out, like=phantom.image)).d100_mg_ha_cm3
    assert report["d100_mg_ha_cm3"] == pytest.approx(d100, rel=1e-9)
    assert abs(d100 - phantom.truth_info["d100_mg_ha_cm3"]) / phantom.truth_info["d100_mg_ha_cm3"] <= 0.03
    assert np.isfinite(report["timings_s"]["total"])


def test_threshold_calibration_on_validation_pairs(tmp_path):
    import shutil

    from napari_vbmd.segmentation.calibrate import calibrate_threshold, set_checkpoint_threshold
    from napari_vbmd.segmentation.datasets import find_pairs

    for seed, hand in ((6300, "right"), (6301, "left")):
        write_phantom(generate_phantom(PhantomSpec(seed=seed, hand=hand, n_slices=40, spacing_mm=0.164)), tmp_path,
                      f"val{seed}")
    pairs = find_pairs(tmp_path)
    result = calibrate_threshold(DEFAULT_CHECKPOINT, pairs, candidates=(0.3, 0.5, 0.7), threads=1, bands=(0.0, 0.25),
                                 levels=(0.5, 0.65))
    # the edge level only where there is a band to refine in
    assert [(row["threshold"], row["boundary_band_mm"], row["edge_level"]) for row in result["table"]] == [
        (0.3, 0.0, 0.5), (0.5, 0.0, 0.5), (0.7, 0.0, 0.5), (0.3, 0.25, 0.5), (0.5, 0.25, 0.5), (0.7, 0.25, 0.5),
        (0.3, 0.25, 0.65), (0.5, 0.25, 0.65), (0.7, 0.25, 0.65)]
    best_dice = max(row["mean_dice"] for row in result["table"])
    chosen = next(row for row in result["table"]
                  if (row["threshold"], row["boundary_band_mm"], row["edge_level"])
                  == (result["threshold"], result["boundary_band_mm"], result["edge_level"]))
    assert chosen["mean_dice"] >= best_dice - 0.01
    assert all(chosen["mean_abs_d100_error_pct"] <= row["mean_abs_d100_error_pct"]
               for row in result["table"] if row["mean_dice"] >= best_dice - 0.01)
    # a higher threshold shrinks the network's mask into the cortex: D100 falls; refined onto the scan's
    # edge, the boundary depends far less on the threshold
    network = [row["mean_d100_error_pct"] for row in result["table"][:3]]
    refined = [row["mean_d100_error_pct"] for row in result["table"][3:6]]
    assert network[0] > network[2]
    assert max(refined) - min(refined) < 0.5 * (max(network) - min(network))
    # a higher edge level leaves out the outer rim of the blurred cortex, which is denser than the bone's
    # mean (trabecular bone and marrow): D100 falls at every threshold
    for half, pulled_in in zip(result["table"][3:6], result["table"][6:]):
        assert pulled_in["mean_d100_error_pct"] < half["mean_d100_error_pct"]

    copy = tmp_path / "copy"
    for suffix in (".json", ".safetensors"):
        shutil.copy(DEFAULT_CHECKPOINT.with_suffix(suffix), copy.with_suffix(suffix))
    set_checkpoint_threshold(copy.with_suffix(".json"), dict(result, threshold=0.7, boundary_band_mm=0.25,
                                                             edge_level=0.65))
    _, config = load_checkpoint(copy, device="cpu")
    assert config.boundary_band_mm == 0.25 and config.edge_level == 0.65
    assert config.threshold == 0.7 and config.training["threshold_calibration"]["cases"] == ["val6300", "val6301"]
