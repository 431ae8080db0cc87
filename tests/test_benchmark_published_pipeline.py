"""The published pipeline's shape used as the benchmark baseline (benchmarks/published_pipeline.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from napari_vbmd.segmentation.checkpoint import ModelConfig
from napari_vbmd.segmentation.preprocess import Box
from napari_vbmd.segmentation.models import LoadedModel

from _segmentation_synthetic import dice, synthetic_mcp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from published_pipeline import PUBLISHED_GRID, published_ceiling, published_segment, working_grid_ceiling  # noqa: E402


class ThresholdNet(nn.Module):
    """Logits = 10 × z-scored density: with mean 600 the 'network' marks voxels denser than 600."""

    def __init__(self, dims: int):
        super().__init__()
        self.dims = dims
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        return 10 * x


def loaded(dims: int) -> LoadedModel:
    arch = "unet2d_small" if dims == 2 else "unet3d_isensee"
    config = ModelConfig(architecture=arch, mean=600.0, std=100.0, threshold=0.5)
    return LoadedModel(ThresholdNet(dims), config, "threshold", torch.device("cpu"), "test")


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("hand", ["left", "right"])
def test_published_shape_resizes_to_80x512x512_and_back_onto_the_scan(dims, hand):
    scan, _ = synthetic_mcp(shape=(24, 96, 128), hand=hand)
    model = loaded(dims)
    mask, timings = published_segment(scan, model, hand=hand, batch_size=16)
    assert mask.shape == scan.shape and mask.dtype == np.uint8
    assert set(timings) == {"preprocess", "inference", "postprocess"}
    if dims == 2:
        assert model.network.calls == [(16, 1, 512, 512)] * 5  # 80 slices in batches of 16
    else:
        assert model.network.calls == [(1, 1, *PUBLISHED_GRID)]
    dense = scan.density() >= 600
    score = dice(dense, mask)
    assert score > 0.6  # blurred by the round trip through a grid of another shape, but in place
    assert dice(dense, mask[..., ::-1]) < score - 0.3  # a left hand comes back mirrored onto itself


def test_published_shape_gives_a_context_network_its_neighbours_in_mm():
    scan, _ = synthetic_mcp(shape=(24, 96, 128))  # 2.4 mm deep: 80 slices of 0.03 mm on the published grid
    config = ModelConfig(architecture="unet2d_small", kwargs={"in_channels": 3}, mean=600.0, std=100.0,
                         threshold=0.5, context_mm=(-0.3, 0.0, 0.3))  # 10 published slices either side
    net = ThresholdNet(2)
    seen = []
    net.forward = lambda x: (seen.append(x.clone()), 10 * x[:, 1:2])[1]
    mask, _ = published_segment(scan, LoadedModel(net, config, "context", torch.device("cpu"), "test"), batch_size=16)
    assert mask.shape == scan.shape
    inputs = torch.cat(seen)
    assert inputs.shape == (80, 3, 512, 512)
    assert torch.equal(inputs[40, 0], inputs[30, 1]) and torch.equal(inputs[40, 2], inputs[50, 1])
    assert torch.equal(inputs[3, 0], inputs[0, 1]) and torch.equal(inputs[75, 2], inputs[79, 1])  # clamped at the ends


def test_resolution_ceilings_of_both_grids():
    _, truth = synthetic_mcp(shape=(24, 96, 128))
    assert dice(truth, published_ceiling(truth)) > 0.9
    box = Box(0, 24, 0, 96, 0, 128)
    same_grid = working_grid_ceiling(truth, (0.1, 0.1), 0.1, box)
    assert np.array_equal(same_grid, truth)  # no resampling: exact
    coarse = working_grid_ceiling(truth, (0.1, 0.1), 0.3, box)
    assert 0.85 < dice(truth, coarse) < 1.0
