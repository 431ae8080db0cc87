"""The segmentation pipeline on small synthetic volumes (fast; the networks here are built by the
tests, so results depend on the pipeline, not on trained weights)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from napari_vbmd.errors import CancelledError, VbmdError
from napari_vbmd.scan import UNIT_DENSITY, Scan
from napari_vbmd.segmentation.checkpoint import ModelConfig
from napari_vbmd.segmentation.focus import BrokenOutlineError
from napari_vbmd.segmentation.models import LoadedModel
from napari_vbmd.segmentation.pipeline import run, segment
from napari_vbmd.segmentation.settings import SegmentSettings

from _segmentation_synthetic import dice, synthetic_mcp

torch.set_num_threads(1)

CONFIG = ModelConfig("unet2d_small", {}, spacing_mm=(0.1, 0.2, 0.2), mean=100.0, std=300.0, threshold=0.5)


class DensityThreshold(nn.Module):
    """Marks voxels denser than 450 mg HA/cm3 (cortex); optionally only in the right half of its input."""

    multiple = 1

    def __init__(self, right_half_only=False):
        super().__init__()
        self.right_half_only = right_half_only

    def forward(self, x):
        density = x * CONFIG.std + CONFIG.mean
        logits = (density - 450.0) / 10.0
        if self.right_half_only:
            logits[..., : x.shape[-1] // 2] = -50.0
        return logits


def _model(right_half_only=False):
    return LoadedModel(DensityThreshold(right_half_only), CONFIG, "threshold-net", torch.device("cpu"), "test")


@pytest.mark.parametrize("hand", ["right", "left"])
def test_network_path_gives_mc2_on_the_exact_grid(hand):
    scan, truth = synthetic_mcp(hand=hand)
    result = segment(scan, model=_model(), keep_probability=True)
    mask = result.mask
    assert mask.kind == "mask" and mask.data.dtype == np.uint8 and set(np.unique(mask.data)) <= {0, 1}
    assert mask.shape == scan.shape and mask.spacing == scan.spacing and mask.origin == scan.origin
    assert dice(mask.data, truth) > 0.93  # cortex threshold + per-slice hole filling + MC2 component
    assert result.hand == hand and result.hand_source == "header"
    last_truth_slice = int(np.flatnonzero(truth.sum(axis=(1, 2)) > 20)[-1])
    assert result.slice_range[0] == 0 and result.slice_range[1] - 1 >= last_truth_slice
    assert set(result.timings) == {"read", "load", "preprocess", "inference", "postprocess"}
    assert result.probability.dtype == np.uint8 and result.probability.shape == result.box.shape


def test_left_hand_comes_back_mirrored_not_rotated():
    """The published code returned left hands rotated 180 degrees. With a network that only looks
    at the right half of its (right-hand oriented) input, a left hand's mask must be exactly the
    mirror image of the same anatomy's right-hand mask."""
    # 126 columns: a whole number of bone-search cells, so both hands get mirror-image crops
    right_scan, _ = synthetic_mcp(shape=(24, 96, 126), hand="right")
    left_scan, _ = synthetic_mcp(shape=(24, 96, 126), hand="left")
    right = segment(right_scan, model=_model(right_half_only=True)).mask.data
    left = segment(left_scan, model=_model(right_half_only=True)).mask.data
    assert right.any()
    assert np.array_equal(left, right[..., ::-1])
    assert dice(left, right[:, ::-1, ::-1]) < 0.6  # not a 180 degree rotation
    # treating the left hand as a right one gives a different answer: the hand is really used. That answer is
    # a mask in pieces on every slice, which the pipeline refuses; let through, it differs from the left hand's
    with pytest.raises(BrokenOutlineError, match="sections are broken on 18 of its 18 slices"):
        segment(left_scan, model=_model(right_half_only=True), hand="right")
    as_right = run(left_scan, SegmentSettings(model=_model(right_half_only=True), hand="right"),
                   refuse_other_bone=False).mask.data
    assert dice(as_right, left) < 0.5


def test_wide_field_of_view_is_cropped_to_the_bone():
    scan, truth = synthetic_mcp(shape=(12, 96, 128), head_slice=9)
    wide = np.full((12, 400, 420), scan.data.min(), dtype=scan.data.dtype)
    wide[:, 250:346, 20:148] = scan.data
    wide_truth = np.zeros(wide.shape, bool)
    wide_truth[:, 250:346, 20:148] = truth
    wide_scan = Scan(wide, scan.spacing, calibration=scan.calibration, unit=scan.unit, hand="right")
    result = segment(wide_scan, model=_model())
    assert np.prod(result.box.shape) < 0.2 * wide.size
    assert dice(result.mask.data, wide_truth) > 0.93


def test_user_slice_range_and_standard_voi():
    scan, truth = synthetic_mcp()
    ranged = segment(scan, model=_model(), slice_range="5:12").mask.data
    present = np.flatnonzero(ranged.any(axis=(1, 2)))
    assert present[0] == 5 and present[-1] == 11
    full = segment(scan, model=_model())
    joint = full.slice_range[1] - 1  # MC2 starts at slice 0 (cut by the scan) and ends in its head
    result = segment(scan, model=_model(), voi_mm=1.0)  # 10 slices of 0.1 mm proximal from the joint
    present = np.flatnonzero(result.mask.data.any(axis=(1, 2)))
    assert result.voi == (joint - 9, joint + 1) and present[0] == joint - 9 and present[-1] == joint
    assert np.array_equal(result.mask.data[joint - 9 : joint + 1], full.mask.data[joint - 9 : joint + 1])
    with pytest.raises(VbmdError, match="selects no slice"):
        segment(scan, model=_model(), slice_range="30:40")


def test_classical_method_needs_no_weights_both_hands():
    for hand in ("right", "left"):
        scan, truth = synthetic_mcp(hand=hand, offset_x=6)
        result = segment(scan, model="classical")
        assert result.model == "classical"
        assert dice(result.mask.data, truth) > 0.93


def test_active_contour_hole_filling_option():
    scan, truth = synthetic_mcp()
    result = segment(scan, model=_model(), hole_filling="active_contour")
    assert dice(result.mask.data, truth) > 0.9
    with pytest.raises(VbmdError, match="hole filling"):
        segment(scan, model=_model(), hole_filling="magic")


def test_progress_cancel_and_threads():
    scan, _ = synthetic_mcp()
    steps = []
    segment(scan, model=_model(), batch_size=4, progress=lambda s, t, m: steps.append((s, t)))
    assert len(steps) >= 6 and steps[-1] == (1, 1)
    with pytest.raises(CancelledError):
        segment(scan, model=_model(), batch_size=4, cancel=lambda: len(steps) > 0)
    before = torch.get_num_threads()
    segment(scan, model=_model(), threads=2)
    assert torch.get_num_threads() == before


def test_scan_with_no_bone_is_a_clear_error():
    soft = Scan(np.full((6, 40, 40), 30.0, np.float32), (0.1,) * 3, unit=UNIT_DENSITY, source="soft.aim")
    with pytest.raises(VbmdError, match="soft.aim: no bone found"):
        segment(soft, model="classical", hand="right")
    with pytest.raises(VbmdError, match="soft.aim: cannot tell which hand this is .no bone in the field of view"):
        segment(soft, model="classical")  # no hand in its header and nothing in the image to tell it


def test_unknown_model_and_models_without_weights():
    scan, _ = synthetic_mcp()
    with pytest.raises(VbmdError, match="unknown model 'resnet9000'"):
        segment(scan, model="resnet9000")
    for name in ("unet2d", "unet3d"):
        with pytest.raises(VbmdError, match="no trained weights are bundled"):
            segment(scan, model=name, device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_cuda():
    scan, _ = synthetic_mcp()
    with pytest.raises(VbmdError, match="CUDA is not available"):
        segment(scan, model="classical", device="cuda")


def test_uncalibrated_scan_is_refused():
    scan = Scan(np.zeros((4, 20, 20), np.int16), (0.1,) * 3, source="raw.tif")
    with pytest.raises(VbmdError, match="raw.tif"):
        segment(scan, model="classical")


def test_3d_network_path():
    config = ModelConfig("unet3d_isensee", {}, spacing_mm=(0.2, 0.2, 0.2), mean=100.0, std=300.0)

    class Threshold3D(DensityThreshold):
        multiple = 1

    scan, truth = synthetic_mcp()
    result = segment(scan, model=LoadedModel(Threshold3D(), config, "t3d", torch.device("cpu"), "test"))
    assert dice(result.mask.data, truth) > 0.85


class RecordInputs(DensityThreshold):
    """DensityThreshold on the centre context channel that also keeps every input batch it saw."""

    def __init__(self, centre: int):
        super().__init__()
        self.centre, self.seen = centre, []

    def forward(self, x):
        self.seen.append(x.clone())
        return super().forward(x[:, self.centre : self.centre + 1])


def test_slice_context_feeds_each_slice_its_neighbours_clamped_to_the_bone_region():
    from napari_vbmd.segmentation.preprocess import density_block, find_bone_box

    scan, truth = synthetic_mcp(shape=(24, 96, 128), spacing=0.1)
    context = (-0.3, 0.0, 0.2)  # -3, 0, +2 slices at 0.1 mm
    config = dataclasses.replace(CONFIG, kwargs={"in_channels": 3}, context_mm=context)
    net = RecordInputs(centre=1)
    loaded = LoadedModel(net, config, "context-net", torch.device("cpu"), "test")
    result = segment(scan, model=loaded, batch_size=5, slice_range=(4, 20))
    assert dice(result.mask.data[4:20], truth[4:20]) > 0.85
    assert not result.mask.data[:4].any() and not result.mask.data[20:].any()

    bone = find_bone_box(scan, margin_mm=config.crop_margin_mm)
    inputs = torch.cat(net.seen).numpy()  # (slices 4..19, 3, h, w), z-scored working slices
    assert inputs.shape[:2] == (16, 3)
    # the network's view of slice z, channel c, must be working slice clamp(z + offset_c) of the bone region
    centre = {z: inputs[z - 4, 1] for z in range(4, 20)}
    for z in range(4, 20):
        for channel, offset in ((0, -3), (2, 2)):
            source = min(max(z + offset, bone.z0), bone.z1 - 1)
            if source in centre:
                np.testing.assert_array_equal(inputs[z - 4, channel], centre[source])
            else:  # outside the user's range: prepared from the scan all the same, not clamped to the range
                density = density_block(scan, (slice(source, source + 1), slice(bone.y0, bone.y1), slice(bone.x0, bone.x1)))
                assert np.abs(inputs[z - 4, channel].mean() - ((density.mean() - CONFIG.mean) / CONFIG.std)) < 0.05


def test_slice_context_reaches_past_a_user_range_but_not_past_the_scan():
    scan, _ = synthetic_mcp(shape=(24, 96, 128), spacing=0.1)
    config = dataclasses.replace(CONFIG, kwargs={"in_channels": 2}, context_mm=(0.0, 5.0))  # 50 slices ahead
    net = RecordInputs(centre=0)
    segment(scan, model=LoadedModel(net, config, "context-net", torch.device("cpu"), "test"), batch_size=8)
    inputs = torch.cat(net.seen).numpy()
    # every slice's second channel is the last slice of the bone region
    for row in inputs[:, 1]:
        np.testing.assert_array_equal(row, inputs[-1, 0])
