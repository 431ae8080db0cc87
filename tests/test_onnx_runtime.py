"""Inference through ONNX Runtime on the CPU: the same numbers as torch, tied to the weights it was
exported from, and a `vbmd segment` that never imports torch."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_vbmd.errors import VbmdError
from napari_vbmd.phantom import PhantomSpec, generate_phantom, write_phantom
from napari_vbmd.segmentation import onnx_runtime
from napari_vbmd.segmentation.checkpoint import ModelConfig, checkpoint_paths, save_checkpoint
from napari_vbmd.segmentation.models import DEFAULT_CHECKPOINT, load
from napari_vbmd.segmentation.networks import build_network
from napari_vbmd.segmentation.onnx_export import export_onnx
from napari_vbmd.segmentation.pipeline import segment
from napari_vbmd.segmentation.preprocess import resample_slices, resample_volume
from napari_vbmd.util import sha256_file

torch.set_num_threads(1)


@pytest.mark.parametrize("h, w, oh, ow", [(390, 488, 107, 133), (107, 133, 390, 488), (50, 60, 50, 30),
                                          (50, 60, 70, 30), (13, 7, 4, 2), (5, 5, 17, 9), (1, 9, 3, 4)])
def test_slice_resampling_is_torch_interpolate(h, w, oh, ow):
    block = np.random.default_rng(h * w).normal(100, 300, size=(3, h, w)).astype(np.float32)
    mode = "area" if oh <= h and ow <= w else "bilinear"
    expected = F.interpolate(torch.from_numpy(block)[:, None], size=(oh, ow), mode=mode,
                             **({} if mode == "area" else {"align_corners": False}))[:, 0].numpy()
    got = resample_slices(block, (oh, ow))
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(block).max()


@pytest.mark.parametrize("shape, out", [((20, 30, 40), (8, 12, 16)), ((8, 12, 16), (20, 30, 40)),
                                        ((20, 30, 40), (30, 30, 40)), ((9, 10, 11), (9, 5, 22))])
def test_volume_resampling_is_torch_interpolate(shape, out):
    volume = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    shrinking = all(o <= s for o, s in zip(out, shape))
    expected = F.interpolate(torch.from_numpy(volume)[None, None], size=out, mode="area" if shrinking else "trilinear",
                             **({} if shrinking else {"align_corners": False}))[0, 0].numpy()
    assert np.abs(resample_volume(volume, out) - expected).max() <= 1e-5


def test_the_bundled_onnx_file_is_the_export_of_the_bundled_weights():
    session = onnx_runtime.open_session(DEFAULT_CHECKPOINT.with_suffix(".onnx"))
    meta = session.get_modelmeta().custom_metadata_map
    assert meta[onnx_runtime.META_WEIGHTS_SHA256] == sha256_file(DEFAULT_CHECKPOINT.with_suffix(".safetensors"))
    assert meta[onnx_runtime.META_ARCHITECTURE] == "unet2d_small"
    assert load("default", "cpu").runtime == "onnxruntime"


def test_onnx_runtime_and_torch_make_the_same_mask():
    """The bundled model both ways on an unseen phantom: probabilities within one level of 255, and
    the masks and D100 the same."""
    phantom = generate_phantom(PhantomSpec(seed=6101, hand="left", n_slices=40, spacing_mm=0.164, motion_grade=1))
    onnx_model = load("default", "cpu", cached=False)
    torch_model = load("default", "cpu", cached=False, runtime="torch")
    assert (onnx_model.runtime, torch_model.runtime) == ("onnxruntime", "torch")
    a = segment(phantom.image, model=onnx_model, threads=1, keep_probability=True)
    b = segment(phantom.image, model=torch_model, threads=1, keep_probability=True)
    assert a.runtime.startswith("onnxruntime") and b.runtime.startswith("torch")
    assert np.abs(a.probability.astype(int) - b.probability.astype(int)).max() <= 1
    differ = int((a.mask.data != b.mask.data).sum())
    assert differ <= 1e-4 * int(b.mask.data.sum())


def _copy_default(tmp_path):
    for suffix in (".json", ".safetensors", ".onnx"):
        shutil.copy(DEFAULT_CHECKPOINT.with_suffix(suffix), tmp_path / f"model{suffix}")
    return tmp_path / "model.json"


def test_an_onnx_file_from_other_weights_is_not_used(tmp_path):
    config_path = _copy_default(tmp_path)
    # other weights, same architecture and config: the ONNX beside them no longer belongs to them
    from napari_vbmd.segmentation.checkpoint import load_checkpoint

    network, config = load_checkpoint(config_path)
    with torch.no_grad():
        next(network.parameters()).add_(0.01)
    save_checkpoint(tmp_path / "model", network, config)
    loaded = load(str(config_path), "cpu", cached=False)
    assert loaded.runtime == "torch" and "exported from other weights" in loaded.runtime_note
    with pytest.raises(VbmdError, match="cannot run this model with ONNX Runtime"):
        load(str(config_path), "cpu", cached=False, runtime="onnxruntime")
    (tmp_path / "model.onnx").write_bytes(b"not onnx")
    assert load(str(config_path), "cpu", cached=False).runtime == "torch"


@pytest.mark.parametrize("architecture, kwargs, context", [
    ("unet2d_small", {"base": 4, "depth": 3, "in_channels": 3, "norm": "instance"}, (-1.0, 0.0, 1.0)),
    ("unet3d_isensee", {"base": 2, "depth": 3}, (0.0,)),
])
def test_export_of_a_trained_checkpoint_answers_as_torch(tmp_path, architecture, kwargs, context):
    torch.manual_seed(0)
    network = build_network(architecture, **kwargs).eval()
    config = ModelConfig(architecture, kwargs, spacing_mm=(0.25, 0.25, 0.25), mean=100.0, std=300.0, threshold=0.5,
                         context_mm=context, name="site", training={"data": "unit test"})
    config_path, weights_path = save_checkpoint(tmp_path / "site", network, config)
    path, difference = export_onnx(config_path)
    assert path == weights_path.with_suffix(".onnx") and difference <= 1e-4
    phantom = generate_phantom(PhantomSpec(seed=6102, hand="right", n_slices=24, spacing_mm=0.164))
    # an untrained network's mask is refused by the pipeline's checks; the probabilities are what is compared
    a = segment(phantom.image, model=load(str(config_path), "cpu", cached=False), threads=1, keep_probability=True,
                refuse_other_bone=False)
    b = segment(phantom.image, model=load(str(config_path), "cpu", cached=False, runtime="torch"), threads=1,
                keep_probability=True, refuse_other_bone=False)
    assert a.runtime.startswith("onnxruntime") and b.runtime.startswith("torch")
    assert np.abs(a.probability.astype(int) - b.probability.astype(int)).max() <= 1


def test_export_never_writes_over_the_checkpoint(tmp_path):
    config_path = _copy_default(tmp_path)
    _, weights_path = checkpoint_paths(config_path)
    before = weights_path.read_bytes()
    with pytest.raises(VbmdError):
        export_onnx(config_path, out=weights_path)
    assert weights_path.read_bytes() == before


def test_vbmd_segment_on_the_cpu_never_imports_torch(tmp_path):
    # a crop the shipped model segments well (a shorter one, seed 6103's 30 slices, gave a mask holding the rim of
    # the phalanx's cup, which the pipeline now refuses)
    phantom = generate_phantom(PhantomSpec(seed=40, hand="right", fov="cropped", n_slices=36, spacing_mm=0.25))
    image = write_phantom(phantom, tmp_path, "case")["image"]
    code = ("import sys, json; from napari_vbmd.cli import main; "
            f"rc = main(['segment', {str(image)!r}, '-o', {str(tmp_path / 'mask.aim')!r}, '--device', 'cpu', "
            "'--threads', '1', '--json']); "
            "print('TORCH', 'torch' in sys.modules); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    payload, torch_line = done.stdout.rsplit("\n", 2)[0], done.stdout.strip().splitlines()[-1]
    assert torch_line == "TORCH False"
    assert json.loads(payload)["runtime"].startswith("onnxruntime")
