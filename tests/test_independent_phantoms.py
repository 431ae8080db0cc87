"""The independent validation family (benchmarks/independent): determinism, exact mirror images,
the truth convention, files whose geometry survives, repeat scans of the same anatomy, and its
independence from the training generator.

Cases here are coarse (0.2 mm voxels, few slices) so that each takes a few seconds; the anatomy is
in millimetres, so a coarse case has the same bones as a native-resolution one.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from napari_vbmd.io import read_mask, read_scan
from napari_vbmd.measure import measure_vbmd

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from independent import IndependentSpec, Pose, evaluation_specs, generate, is_cached, precision_specs, write_case  # noqa: E402
from independent.scanner import CALIBRATIONS  # noqa: E402

COARSE = dict(voxel_mm=0.2, n_slices=40)  # 8 mm along the bones: joint, head and neck


@pytest.fixture(scope="module")
def right():
    return generate(IndependentSpec(seed=11, erosions=2, motion_grade=2, **COARSE))


@pytest.fixture(scope="module")
def left():
    return generate(IndependentSpec(seed=11, hand="left", erosions=2, motion_grade=2, **COARSE))


def test_same_spec_same_voxels(right):
    again = generate(IndependentSpec(seed=11, erosions=2, motion_grade=2, **COARSE))
    assert np.array_equal(again.image.data, right.image.data)
    assert np.array_equal(again.truth.data, right.truth.data)
    assert again.info["d100_mg_ha_cm3"] == right.info["d100_mg_ha_cm3"]


def test_other_seed_other_hand_anatomy(right):
    other = generate(IndependentSpec(seed=12, **COARSE))
    assert other.info["design"]["metacarpals"]["MC2"] != right.info["design"]["metacarpals"]["MC2"]


def test_left_hand_is_the_exact_mirror_image(right, left):
    assert np.array_equal(left.image.data, right.image.data[:, :, ::-1])
    assert np.array_equal(left.truth.data, right.truth.data[:, :, ::-1])
    n_field = right.info["scanner_field_voxels"]
    x_right, x_left = right.info["aim_position_xyz"][0], left.info["aim_position_xyz"][0]
    assert x_left == n_field - x_right - right.image.shape[2]  # mirrored within the scanner's field
    assert left.info["d100_mg_ha_cm3"] == pytest.approx(right.info["d100_mg_ha_cm3"], rel=1e-12)


def test_truth_is_a_solid_envelope_and_d100_is_the_image_under_it(right):
    truth = right.truth.data.astype(bool)
    for k in np.flatnonzero(truth.any(axis=(1, 2))):
        assert np.array_equal(ndimage.binary_fill_holes(truth[k]), truth[k])  # cortex and marrow, no holes
    expected = right.image.density()[truth].astype(np.float64).mean()
    assert right.info["d100_mg_ha_cm3"] == pytest.approx(expected, rel=1e-6)
    assert 120 < right.info["d100_mg_ha_cm3"] < 450  # a physiological MC2 D100 (study: 162-377)
    assert right.info["first_slice"] > 0  # the joint space and the phalanx base come first


def test_erosions_are_excluded_from_the_truth():
    intact = generate(IndependentSpec(seed=21, **COARSE))
    eroded = generate(IndependentSpec(seed=21, erosions=3, **COARSE))
    a, b = intact.truth.data.astype(bool), eroded.truth.data.astype(bool)
    assert not (b & ~a).any()  # a pit only removes
    removed = a & ~b
    assert removed.sum() > 20
    # the pits open to the outside: every removed voxel connects to non-bone without crossing the bone
    outside = ~b
    labels, _ = ndimage.label(outside)
    background = set(np.unique(labels[~a])) - {0}
    assert set(np.unique(labels[removed])) <= background
    # the pit holds soft tissue, not bone
    assert intact.image.density()[removed].mean() > eroded.image.density()[removed].mean() + 100


def test_written_files_keep_geometry_calibration_and_hand_convention(right, tmp_path):
    paths = write_case(right, tmp_path, "case")
    image = read_scan(paths["image"])
    mask = read_mask(paths["mask"], like=image)
    assert image.shape == right.image.shape
    assert np.allclose(image.spacing, right.image.spacing) and np.allclose(image.origin, right.image.origin)
    assert np.allclose(mask.origin, image.origin) and np.allclose(mask.spacing, image.spacing)
    assert image.calibration.density_slope == pytest.approx(CALIBRATIONS["xtremect1"].density_slope)
    assert image.hand is None  # like a real Scanco file: the hand is not in the header
    assert np.array_equal(image.data, right.image.data) and np.array_equal(mask.data, right.truth.data)
    info = json.loads(paths["truth"].read_text())
    assert measure_vbmd(image, mask).d100_mg_ha_cm3 == pytest.approx(info["d100_mg_ha_cm3"], rel=1e-5)
    assert info["spec"]["seed"] == 11 and info["truth_convention"].startswith("MC2's periosteal envelope")
    assert is_cached(tmp_path, "case", IndependentSpec(seed=11, erosions=2, motion_grade=2, **COARSE))
    assert not is_cached(tmp_path, "case", IndependentSpec(seed=11, **COARSE))
    with pytest.raises(Exception, match="refusing to overwrite"):
        write_case(right, tmp_path, "case")


def test_hand_in_header_switch(tmp_path):
    case = generate(IndependentSpec(seed=11, hand="left", hand_in_header=True, voxel_mm=0.25, n_slices=20))
    paths = write_case(case, tmp_path, "left")
    assert read_scan(paths["image"]).hand == "left"


def test_repeat_scan_keeps_the_anatomy():
    base = dict(seed=31, **COARSE)
    scans = [generate(IndependentSpec(**base, pose=Pose(rotation_deg=a, shift_mm=(dy, dx), noise_seed=n)))
             for a, dy, dx, n in ((0.0, 0.0, 0.0, 0), (7.0, 1.5, -1.8, 1), (-6.0, -1.2, 1.0, 2))]
    volumes = np.array([s.info["volume_mm3"] for s in scans])
    assert np.ptp(volumes) / volumes.mean() < 0.02  # in-plane moves: the same bone, resampled
    assert not np.array_equal(scans[0].image.data, scans[1].image.data)
    d100 = np.array([s.info["d100_mg_ha_cm3"] for s in scans])
    assert np.ptp(d100) / d100.mean() < 0.03
    # with tilt and a shift along the bone (Pose.draw) the field shows a little more or less of MC2
    drawn = generate(IndependentSpec(**base, pose=Pose.draw(5)))
    assert abs(drawn.info["volume_mm3"] / volumes[0] - 1) < 0.15
    assert drawn.info["spec"]["pose"]["noise_seed"] == 5


def test_whole_hand_field_holds_four_metacarpals_and_the_thumb():
    case = generate(IndependentSpec(seed=41, field="whole", voxel_mm=0.4, n_slices=16))
    design = case.info["design"]
    assert set(design["metacarpals"]) == {"MC2", "MC3", "MC4", "MC5"} and design["thumb"] is not None
    assert case.image.shape[1:] == (315, 315)  # the scanner's 126 mm field at 0.4 mm
    bone = case.image.density() > 500
    labels, n = ndimage.label(bone[8])
    assert n >= 5  # MC2-MC5 (or their phalanges) and the thumb in one slice


def test_cohorts_cover_what_the_evaluation_needs():
    specs = evaluation_specs()
    assert len(specs) == 48 and len({s.seed for s in specs}) == 48
    assert {s.hand for s in specs} == {"left", "right"} and {s.field for s in specs} == {"crop", "whole"}
    assert {s.voxel_mm for s in specs} == {0.061, 0.082} and {s.scanner for s in specs} == {"xtremect1", "xtremect2"}
    assert {s.motion_grade for s in specs} == {0, 1, 2, 3} and {s.erosions for s in specs} == {0, 1, 2, 3}
    assert {(s.field, s.voxel_mm) for s in specs} == {("crop", 0.061), ("crop", 0.082), ("whole", 0.061), ("whole", 0.082)}
    groups = precision_specs()
    assert len(groups) == 20 and all(len(g) == 3 for g in groups)
    for group in groups:
        assert len({s.seed for s in group}) == 1 and len({s.pose for s in group}) == 3
        assert {s.motion_grade for s in group} <= {0, 1, 2}
        pose = group[0].pose
        assert abs(pose.rotation_deg) <= 8 and max(map(abs, pose.shift_mm)) <= 2 and max(map(abs, pose.tilt_deg)) <= 3
    assert not {s.seed for s in specs} & {g[0].seed for g in groups}


def test_bad_specs_are_refused():
    for bad in (dict(hand="both"), dict(field="full"), dict(scanner="xtremect3"), dict(n_slices=2), dict(motion_grade=4)):
        with pytest.raises(ValueError):
            IndependentSpec(seed=1, **bad)
    assert dataclasses.replace(IndependentSpec(seed=1), hand="left").hand == "left"


def test_the_family_never_imports_the_training_generator():
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "import independent, independent.cases, independent.render, independent.hand, independent.bones, "
        "independent.shapes, independent.texture, independent.scanner, independent.cohorts\n"
        "independent.generate(independent.IndependentSpec(seed=3, voxel_mm=0.4, n_slices=24))\n"
        "leaked = [m for m in sys.modules if m.startswith('napari_vbmd.phantom') or m == 'napari_vbmd.segmentation']\n"
        "assert not leaked, leaked\n" % str(BENCHMARKS)
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    for source in (BENCHMARKS / "independent").glob("*.py"):
        text = source.read_text()
        assert "import napari_vbmd.phantom" not in text and "from napari_vbmd.phantom" not in text, source
        assert "from napari_vbmd import phantom" not in text, source
        assert len(text.splitlines()) < 500, source


@pytest.mark.parametrize("grade", [1, 2, 3])
def test_motion_leaves_the_bone_where_the_truth_is(grade):
    # A held move shifts the views after it, and each edge moves with the views along its normal.
    # Measured from the start position (version 1), grade 3 put the image's bone 0.8 mm off the truth,
    # and every model looked 10-20 % wrong on those cases.
    from independent.scanner import apply_motion, draw_motion

    voxel_mm = 0.082
    yy, xx = np.mgrid[:256, :256]
    disc = ((yy - 128.0) ** 2 + (xx - 120.0) ** 2 < 60.0 ** 2).astype(np.float32) * 1000
    for seed in range(6):
        track = draw_motion(np.random.default_rng(seed), grade)
        tau = (np.arange(2048) + 0.5) / 2048
        dy, dx = track.displacement(tau, 0.5)
        assert np.hypot(dy, dx).max() > 0.02  # it did move
        moved = apply_motion(disc, track, voxel_mm, 0.5, pad=32)
        # where a contour drawn at half the bone's value sits, against the truth
        shift = np.array(ndimage.center_of_mass(moved > 500)) - np.array(ndimage.center_of_mass(disc > 500))
        assert np.hypot(*shift) * voxel_mm < 0.05, (seed, shift)
