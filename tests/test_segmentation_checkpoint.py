"""Checkpoints: safetensors + JSON round trip, and refusal of anything else."""
from __future__ import annotations

import json

import pytest
import torch

from napari_vbmd.errors import VbmdError
from napari_vbmd.segmentation.checkpoint import (
    FORMAT_VERSION,
    ModelConfig,
    load_checkpoint,
    make_ensemble,
    read_config,
    save_checkpoint,
)
from napari_vbmd.segmentation.networks import build_network

torch.set_num_threads(1)


def _tiny(tmp_path, name="tiny"):
    torch.manual_seed(0)
    model = build_network("unet2d_small", base=4, depth=2)
    config = ModelConfig("unet2d_small", {"base": 4, "depth": 2}, spacing_mm=(0.082, 0.2, 0.2), mean=120.0,
                         std=300.0, threshold=0.4, name=name, training={"data": "unit test"})
    paths = save_checkpoint(tmp_path / name, model, config)
    return model, paths


def test_round_trip_gives_the_same_network(tmp_path):
    model, (config_path, weights_path) = _tiny(tmp_path)
    assert weights_path.read_bytes()[8:9] == b"{"  # safetensors: 8-byte header length, JSON header
    data = json.loads(config_path.read_text())
    for key in ("architecture", "kwargs", "spacing_mm", "mean", "std", "threshold", "training",
                "project_version", "format_version"):
        assert key in data
    assert data["format_version"] == FORMAT_VERSION and data["project_version"]
    loaded, config = load_checkpoint(config_path)
    assert config.spacing_mm == (0.082, 0.2, 0.2) and config.threshold == 0.4 and config.mean == 120.0
    x = torch.randn(1, 1, 16, 16)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x))
    # the folder, the stem and the weights file all name the same checkpoint
    assert read_config(tmp_path).name == "tiny"
    assert read_config(weights_path).name == "tiny"


def test_corrupt_weights_are_refused_naming_the_file(tmp_path):
    _, (config_path, weights_path) = _tiny(tmp_path)
    weights_path.write_bytes(weights_path.read_bytes()[:100])
    with pytest.raises(VbmdError, match="tiny.safetensors"):
        load_checkpoint(config_path)


def test_pickle_is_never_loaded(tmp_path):
    _, (config_path, weights_path) = _tiny(tmp_path)
    torch.save(build_network("unet2d_small", base=4, depth=2).state_dict(), weights_path)  # a pickle
    with pytest.raises(VbmdError, match="corrupt or not safetensors"):
        load_checkpoint(config_path)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format_version": 99}, "format version 99"),
        ({"architecture": "segformer"}, "architecture 'segformer'"),
        ({"format": "something-else"}, "not a napari-vbmd checkpoint"),
        ({"std": 0}, "invalid values"),
        ({"threshold": 1.5}, "invalid values"),
        ({"context_mm": []}, "invalid values"),
        ({"context_mm": ["nan"]}, "invalid values"),
        ({"context_mm": [-1.0, 0.0, 1.0]}, "3 context slices need 3 input channels; the network has 1"),
        ({"architecture": "unet3d_isensee", "context_mm": [-1.0, 0.0]}, "for 2D networks"),
    ],
)
def test_other_versions_and_architectures_are_refused(tmp_path, change, message):
    _, (config_path, _) = _tiny(tmp_path)
    data = json.loads(config_path.read_text())
    data.update(change)
    config_path.write_text(json.dumps(data))
    with pytest.raises(VbmdError, match=message) as info:
        load_checkpoint(config_path)
    assert "tiny.json" in str(info.value)


def test_weights_of_another_architecture_are_refused(tmp_path):
    _, (config_path, weights_path) = _tiny(tmp_path)
    data = json.loads(config_path.read_text())
    data.update(architecture="unet3d_isensee", kwargs={})
    config_path.write_text(json.dumps(data))
    with pytest.raises(VbmdError, match="do not match the unet3d_isensee"):
        load_checkpoint(config_path)


def test_broken_json_and_missing_files(tmp_path):
    _, (config_path, weights_path) = _tiny(tmp_path)
    config_path.write_text("{not json")
    with pytest.raises(VbmdError, match="not valid JSON"):
        load_checkpoint(config_path)
    weights_path.unlink()
    with pytest.raises(VbmdError, match="not found"):
        load_checkpoint(config_path)


def test_slice_context_round_trips_and_older_checkpoints_mean_the_slice_alone(tmp_path):
    torch.manual_seed(0)
    model = build_network("unet2d_small", base=4, depth=2, in_channels=3)
    config = ModelConfig("unet2d_small", {"base": 4, "depth": 2, "in_channels": 3}, spacing_mm=(0.082, 0.2, 0.2),
                         mean=120.0, std=300.0, context_mm=(-2.0, 0.0, 2.0))
    config_path, _ = save_checkpoint(tmp_path / "context", model, config)
    assert json.loads(config_path.read_text())["context_mm"] == [-2.0, 0.0, 2.0]
    loaded, read_back = load_checkpoint(config_path)
    assert read_back.context_mm == (-2.0, 0.0, 2.0)
    x = torch.randn(2, 3, 16, 16)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x))

    _, (old_path, _) = _tiny(tmp_path, "old")
    data = json.loads(old_path.read_text())
    del data["context_mm"]  # written before slice context existed
    old_path.write_text(json.dumps(data))
    assert read_config(old_path).context_mm == (0.0,)


def _member(tmp_path, seed, name=None, **config_changes):
    torch.manual_seed(seed)
    model = build_network("unet2d_small", base=4, depth=2)
    settings = dict(spacing_mm=(0.082, 0.2, 0.2), mean=120.0, std=300.0, threshold=0.4, name="member",
                    training={"data": "pairs.csv", "settings": {"seed": seed}})
    settings.update(config_changes)
    kwargs = settings.pop("kwargs", {"base": 4, "depth": 2})
    if kwargs != {"base": 4, "depth": 2}:
        model = build_network("unet2d_small", **kwargs)
    config_path, _ = save_checkpoint(tmp_path / (name or f"seed{seed}"), model, ModelConfig("unet2d_small", kwargs, **settings))
    return model.eval(), config_path


def test_an_ensemble_answers_with_its_members_mean_probability_and_round_trips(tmp_path):
    members = [_member(tmp_path, seed) for seed in (1, 2, 3)]
    config_path, weights_path = make_ensemble([path for _, path in members], tmp_path / "ensemble", name="joined")
    ensemble, config = load_checkpoint(config_path)
    assert config.kwargs == {"base": 4, "depth": 2, "members": 3} and config.name == "joined"
    assert (config.threshold, config.mean, config.std, config.spacing_mm) == (0.4, 120.0, 300.0, (0.082, 0.2, 0.2))
    assert [m["training"]["settings"]["seed"] for m in config.training["ensemble_of"]] == [1, 2, 3]
    assert config.training["data"] == "pairs.csv"
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        expected = torch.stack([torch.sigmoid(model(x)) for model, _ in members]).mean(0)
        answer = torch.sigmoid(ensemble(x))
        single = torch.sigmoid(members[0][0](x))
    assert torch.allclose(answer, expected, atol=1e-5)
    assert not torch.allclose(answer, single, atol=1e-3)  # the members differ, so the mean is not one of them
    assert ensemble.multiple == members[0][0].multiple


def test_an_ensemble_of_other_recipes_or_of_one_network_is_refused(tmp_path):
    _, first = _member(tmp_path, 1)
    for name, changes, what in [
        ("std", {"std": 250.0}, "normalisation statistics"),
        ("grid", {"spacing_mm": (0.082, 0.3, 0.3)}, "working spacing"),
        ("wide", {"kwargs": {"base": 8, "depth": 2}}, "architecture settings"),
    ]:
        _, other = _member(tmp_path, 2, name=name, **changes)
        with pytest.raises(VbmdError, match=what) as info:
            make_ensemble([first, other], tmp_path / f"bad_{name}")
        assert f"{name}.json" in str(info.value)
        assert not (tmp_path / f"bad_{name}.json").exists()
    with pytest.raises(VbmdError, match="at least 2"):
        make_ensemble([first], tmp_path / "alone")
    _, second = _member(tmp_path, 2)
    joined, _ = make_ensemble([first, second], tmp_path / "joined")
    with pytest.raises(VbmdError, match="already an ensemble"):
        make_ensemble([joined, first], tmp_path / "nested")
    with pytest.raises(VbmdError, match="members must be a whole number"):
        build_network("unet2d_small", base=4, depth=2, members=0)
