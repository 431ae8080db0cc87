"""Boundary refinement: the network decides what is MC2, the scan's half-maximum edge decides where its
surface lies (postprocess.refine_boundary), as a checkpoint setting, a segment() argument and a CLI flag."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from napari_vbmd.errors import VbmdError
from napari_vbmd.segmentation.checkpoint import ModelConfig, read_config, save_checkpoint
from napari_vbmd.segmentation.networks import build_network
from napari_vbmd.segmentation.pipeline import segment
from napari_vbmd.segmentation.postprocess import check_boundary_band, check_edge_level, refine_boundary
from napari_vbmd.segmentation.models import LoadedModel

from _segmentation_synthetic import dice, synthetic_mcp

SPACING = (0.082, 0.082, 0.082)


def _ring_phantom(n_slices=4, size=140, radius=40.0, cortex=8.0, blur=1.5):
    """A blurred bone cross-section: cortex 1000, marrow 200, soft tissue 30 (mg HA/cm3); the truth is
    the disk inside the periosteal circle, as the phantoms' truth is the periosteal envelope."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2 + 0.5, xx - size / 2 + 0.5)
    slice_density = np.where(r <= radius, np.where(r > radius - cortex, 1000.0, 200.0), 30.0)
    slice_density = ndimage.gaussian_filter(slice_density, blur)
    density = np.repeat(slice_density[None].astype(np.float32), n_slices, axis=0)
    truth = np.repeat((r <= radius)[None], n_slices, axis=0)
    disk = lambda radius_px: np.repeat((r <= radius_px)[None], n_slices, axis=0)  # noqa: E731
    return density, truth, disk


@pytest.mark.parametrize("offset_px", [-3, +3])
def test_refinement_moves_a_boundary_off_by_quarter_mm_onto_the_edge(offset_px):
    density, truth, disk = _ring_phantom()
    coarse = disk(40 + offset_px)
    refined = refine_boundary(coarse, density, SPACING, band_mm=0.35)
    assert dice(coarse, truth) < 0.93
    assert dice(refined, truth) > 0.99
    # the mean density inside (what D100 measures) comes back to within 0.5 % of the truth's
    true_mean = density[truth].mean()
    assert abs(density[coarse].mean() / true_mean - 1) > 0.03
    assert abs(density[refined].mean() / true_mean - 1) < 0.005


def test_refinement_stays_within_its_band_and_keeps_the_networks_decision():
    density, truth, disk = _ring_phantom()
    coarse = disk(33)  # 7 voxels (0.57 mm) inside: farther than the band reaches
    refined = refine_boundary(coarse, density, SPACING, band_mm=0.25)
    grown = refined & ~coarse
    distance = ndimage.distance_transform_edt(~coarse, sampling=SPACING)
    assert grown.any() and distance[grown].max() <= 0.25 + 1e-6
    # a bright blob in the band that does not touch the bone in-plane is not added
    density2 = density.copy()
    density2[:, 70, 111:113] = 1000.0  # just outside the periosteal circle (r = 40.5 .. 42.5 px)
    refined2 = refine_boundary(disk(40), density2, SPACING, band_mm=0.35)
    labels, n = ndimage.label(refined2[0])
    assert n == 1


def test_band_zero_and_tiny_slices_keep_the_mask():
    density, truth, disk = _ring_phantom()
    coarse = disk(37)
    assert np.array_equal(refine_boundary(coarse, density, SPACING, 0.0), coarse)
    tip = np.zeros_like(coarse)
    tip[1, 68:71, 68:71] = True  # a slice with no core deeper than the band (the domed head's tip)
    assert np.array_equal(refine_boundary(tip, density, SPACING, 0.35), tip)
    empty = np.zeros_like(coarse)
    assert not refine_boundary(empty, density, SPACING, 0.35).any()
    with pytest.raises(VbmdError, match="differ in shape"):
        refine_boundary(coarse, density[:2], SPACING, 0.35)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), 2.5, "wide", None])
def test_impossible_bands_are_refused(bad):
    with pytest.raises(VbmdError, match="boundary refinement band must be between 0 and 2 mm"):
        check_boundary_band(bad)


def test_checkpoint_carries_the_band_and_old_configs_read_as_zero(tmp_path):
    config = ModelConfig("unet2d_small", {"base": 4, "depth": 2}, spacing_mm=(0.3, 0.3, 0.3), boundary_band_mm=0.25)
    network = build_network("unet2d_small", base=4, depth=2)
    json_path, _ = save_checkpoint(tmp_path / "m", network, config)
    assert read_config(json_path).boundary_band_mm == 0.25
    data = json.loads(json_path.read_text())
    del data["boundary_band_mm"]  # a checkpoint written before the setting existed
    json_path.write_text(json.dumps(data))
    assert read_config(json_path).boundary_band_mm == 0.0
    data["boundary_band_mm"] = -1
    json_path.write_text(json.dumps(data))
    with pytest.raises(VbmdError, match="invalid values.*boundary band"):
        read_config(json_path)


def _thin_cortex_phantom(n_slices=2, size=120, radius=40.0, cortex=4.0, blur=2.0):
    """A thin cortex (0.33 mm) blurred about as wide as it is: its half-maximum lies outside the bone."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2 + 0.5, xx - size / 2 + 0.5)
    slice_density = np.where(r <= radius, np.where(r > radius - cortex, 1000.0, 150.0), -80.0)
    slice_density = ndimage.gaussian_filter(slice_density, blur)
    return np.repeat(slice_density[None].astype(np.float32), n_slices, axis=0), np.repeat((r <= radius)[None], n_slices, 0)


def test_a_higher_edge_level_pulls_the_edge_in_and_the_half_maximum_is_the_default():
    density, truth = _thin_cortex_phantom()
    coarse = ndimage.binary_dilation(truth, np.ones((1, 5, 5), bool))  # two voxels outside
    half = refine_boundary(coarse, density, SPACING, 0.35)
    assert np.array_equal(refine_boundary(coarse, density, SPACING, 0.35, edge_level=0.5), half)
    higher = refine_boundary(coarse, density, SPACING, 0.35, edge_level=0.6)
    lower = refine_boundary(coarse, density, SPACING, 0.35, edge_level=0.4)
    assert (higher <= half).all() and (half <= lower).all()  # monotone in the level
    assert higher.sum() < half.sum() < lower.sum()
    # on a thin blurred cortex the half-maximum edge lies outside the truth: the mask's mean density reads high
    true_mean = density[truth].mean()
    assert half.sum() > truth.sum() and density[half].mean() > true_mean
    assert abs(density[higher].mean() - true_mean) < abs(density[half].mean() - true_mean)


@pytest.mark.parametrize("bad", [0.2, 0.9, float("nan"), "half", None])
def test_impossible_edge_levels_are_refused(bad):
    with pytest.raises(VbmdError, match="edge level must be between 0.3 and 0.8"):
        check_edge_level(bad)
    density, truth = _thin_cortex_phantom()
    with pytest.raises(VbmdError, match="edge level"):
        refine_boundary(truth, density, SPACING, 0.25, edge_level=bad)


def test_checkpoint_carries_the_edge_level_and_old_configs_read_as_half_maximum(tmp_path):
    config = ModelConfig("unet2d_small", {"base": 4, "depth": 2}, spacing_mm=(0.3, 0.3, 0.3), boundary_band_mm=0.25,
                         edge_level=0.6)
    json_path, _ = save_checkpoint(tmp_path / "m", build_network("unet2d_small", base=4, depth=2), config)
    assert read_config(json_path).edge_level == 0.6
    data = json.loads(json_path.read_text())
    del data["edge_level"]  # written before the setting existed
    json_path.write_text(json.dumps(data))
    assert read_config(json_path).edge_level == 0.5
    data["edge_level"] = 0.95
    json_path.write_text(json.dumps(data))
    with pytest.raises(VbmdError, match="edge level"):
        read_config(json_path)


class DenseCore(nn.Module):
    """Marks only voxels above 800 mg HA/cm3 in a blurred scan: a boundary about one voxel inside the
    bone's edge, as a network on a coarse grid leaves it."""

    multiple = 1

    def __init__(self, config):
        super().__init__()
        self.config = config

    def forward(self, x):
        density = x * self.config.std + self.config.mean
        return (density - 800.0) / 10.0


def _blurred_mcp():
    scan, truth = synthetic_mcp(noise=5.0)
    density = ndimage.gaussian_filter(scan.density(), (0, 1.0, 1.0))
    return scan.with_data(scan.calibration.density_to_native(density).round().astype(np.int16)), truth


def test_segment_refines_with_the_checkpoints_band_and_the_argument_overrides_it():
    scan, truth = _blurred_mcp()
    config = ModelConfig("unet2d_small", {}, spacing_mm=(0.1, 0.1, 0.1), mean=100.0, std=300.0, threshold=0.5,
                         boundary_band_mm=0.3)
    loaded = LoadedModel(DenseCore(config), config, "dense-core", torch.device("cpu"), "test")
    refined = segment(scan, model=loaded)
    plain = segment(scan, model=loaded, boundary_band_mm=0)
    assert refined.mask.header["segmentation"]["boundary_band_mm"] == 0.3
    assert refined.mask.header["segmentation"]["edge_level"] == 0.5
    assert plain.mask.header["segmentation"]["boundary_band_mm"] == 0.0
    assert plain.mask.header["segmentation"]["edge_level"] is None  # nothing was refined
    pulled_in = segment(scan, model=dataclasses.replace(loaded, config=dataclasses.replace(config, edge_level=0.7)))
    assert pulled_in.mask.header["segmentation"]["edge_level"] == 0.7
    assert pulled_in.mask.data.sum() < refined.mask.data.sum()
    assert dice(refined.mask.data, truth) > dice(plain.mask.data, truth) + 0.02
    assert refined.mask.shape == scan.shape and refined.mask.spacing == scan.spacing
    with pytest.raises(VbmdError, match="boundary refinement band"):
        segment(scan, model=loaded, boundary_band_mm=-1)
    classical = segment(scan, model="classical", boundary_band_mm=0.3)  # accepted; the classical method
    assert classical.mask.header["segmentation"]["boundary_band_mm"] == 0.0  # snaps its own contour
