"""Issue 21 item 11: checkpoint configs are checked field by field before anything is built, and a
checkpoint never makes the program fetch or unpickle anything; item 10/12 for training settings."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from napari_vbmd.errors import VbmdError
from napari_vbmd.segmentation.checkpoint import ModelConfig, load_checkpoint, save_checkpoint
from napari_vbmd.segmentation.networks import build_network
from napari_vbmd.segmentation.settings_check import check_train_settings
from napari_vbmd.segmentation.training import TrainSettings


def _nested(depth: int):
    value = []
    for _ in range(depth):
        value = [value]
    return value


class Payload:
    """Stands for an object a pickle would rebuild (and run code for)."""


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    config = ModelConfig("unet2d_small", {"base": 4, "depth": 2}, spacing_mm=(0.5, 0.5, 0.5), mean=100.0, std=300.0)
    config_path, _ = save_checkpoint(tmp_path / "tiny", build_network("unet2d_small", base=4, depth=2), config)
    return config_path


def _edit(config_path, change):
    data = json.loads(config_path.read_text())
    change(data)
    config_path.write_text(json.dumps(data))


@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(spacing_mm=[1e-4] * 3), "working spacing must be at least 0.05"),  # tried to allocate 2.6 TB
    (lambda d: d["kwargs"].update(members=100_000), "members must be between 1 and 16"),
    (lambda d: d.update(crop_margin_mm=-3), "crop margin (mm) must be at least 0.0"),
    (lambda d: d["kwargs"].update(base=4.0), "base must be a whole number, got 4.0"),
    (lambda d: d["kwargs"].update(in_channels=1.5), "in_channels must be a whole number"),
    (lambda d: d["kwargs"].update(depth=True), "depth must be a whole number"),
    (lambda d: d["kwargs"].update(norm="layer"), "norm must be one of batch, instance"),
    (lambda d: d["kwargs"].update(dropout=0.1), "unknown setting(s) ['dropout']"),
    (lambda d: d.update(context_mm=[0.0] * 40), "1 to 32 offsets"),
    (lambda d: d.update(training={"a": _nested(40)}), "nests more than 32 levels"),
    (lambda d: d.update(name=["x"]), "name must be a text"),
])
def test_configs_out_of_bounds_are_refused_before_building(checkpoint, change, words, monkeypatch):
    import napari_vbmd.segmentation.networks as module

    _edit(checkpoint, change)
    monkeypatch.setattr(module, "build_network", lambda *a, **k: pytest.fail("built before the config was checked"))
    with pytest.raises(VbmdError, match="invalid values") as info:
        load_checkpoint(checkpoint)
    assert words in str(info.value) and str(checkpoint) in str(info.value)


def test_deeply_nested_json_is_one_line(checkpoint):
    text = checkpoint.read_text().replace('"training": {}', '"training": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    checkpoint.write_text(text)
    with pytest.raises(VbmdError, match="nests too deeply"):
        load_checkpoint(checkpoint)


@pytest.mark.parametrize("setting, value", [("encoder_weights_path", "../weights.pth"), ("imagenet_online", True)])
def test_a_checkpoint_never_fetches_or_unpickles(checkpoint, tmp_path, monkeypatch, setting, value):
    """`"imagenet_online": true` made six network requests; a config's weights path was unpickled."""
    _edit(checkpoint, lambda d: d.update(architecture="unet2d_resnet34", kwargs={setting: value}))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called for a checkpoint"))
    import segmentation_models_pytorch as smp

    monkeypatch.setattr(smp, "Unet", lambda *a, **k: pytest.fail("a network was built (and could download)"))
    with pytest.raises(VbmdError, match="never makes the program fetch or unpickle anything"):
        load_checkpoint(checkpoint)


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool])
def test_weights_of_another_type_are_refused_not_cast(checkpoint, dtype):
    weights = checkpoint.with_suffix(".safetensors")
    state = load_file(str(weights))
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].to(dtype)
    save_file(state, str(weights))
    with pytest.raises(VbmdError, match=f"weights of type {dtype} where the network holds torch.float32"):
        load_checkpoint(checkpoint)


def test_nan_weights_are_refused(checkpoint):
    weights = checkpoint.with_suffix(".safetensors")
    state = load_file(str(weights))
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = torch.full_like(state[key], float("nan"))
    save_file(state, str(weights))
    with pytest.raises(VbmdError, match="NaN or infinite"):
        load_checkpoint(checkpoint)


@pytest.mark.parametrize("changes, words", [
    (dict(lr=-1.0), "learning rate (--lr) must be above 0.0"),
    (dict(batch_size=0), "batch size must be between 1 and 4096"),
    (dict(epochs=1.5), "epochs must be a whole number"),
    (dict(spacing_mm=(1e-4, 0.3, 0.3)), "working spacing (--spacing-mm) must be at least 0.05"),
    (dict(kwargs={"members": 3, "base": 4}), None),
    (dict(kwargs={"encoder_weights_path": "x.pth"}), "use --encoder-weights or --imagenet-online"),
    (dict(patch=(8.5, 16)), "patch size (working voxels) must be a whole number"),
    (dict(empty_slice_fraction=2.0), "empty slice fraction must be at least 0.0 and at most 1.0"),
    (dict(crop_margin_mm=float("inf")), "crop margin (mm) must be a finite number"),
    (dict(max_minutes=0.0), "time budget (--max-minutes) must be above 0.0"),
])
def test_training_settings_have_bounds(changes, words):
    settings = dataclasses.replace(TrainSettings(), **changes)
    if words is None:
        check_train_settings(settings)
        return
    with pytest.raises(VbmdError) as info:
        check_train_settings(settings)
    assert words in str(info.value)


def test_encoder_weights_from_the_command_line_are_resolved_where_typed(tmp_path, monkeypatch, capsys):
    """They are the user's own file: resolved from the folder vbmd runs in and recorded absolute; read
    tensors-only (torch.load weights_only) or as safetensors."""
    import napari_vbmd.segmentation.training as training
    from napari_vbmd.cli import main

    seen = {}

    def fake_train(data, out, settings, **kwargs):
        seen["settings"] = settings
        return {"out_dir": str(out)}

    monkeypatch.setattr(training, "train", fake_train)
    (tmp_path / "w.safetensors").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "data", "-o", "run", "--architecture", "unet2d_resnet34", "--encoder-weights",
                 "w.safetensors", "--quiet"]) == 0
    assert seen["settings"].encoder_weights_path == str(tmp_path / "w.safetensors")


def test_encoder_weights_are_read_tensors_only(tmp_path):
    from napari_vbmd.segmentation.networks import _read_state_dict

    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "extra": Payload()}, str(path))
    with pytest.raises(VbmdError, match="cannot read encoder weights"):
        _read_state_dict(path)
