"""The fourth independent phantom family (benchmarks/independent4): interface, truth, mirror, poses, files."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import independent4 as gen  # noqa: E402
from napari_vbmd.io import read_mask, read_scan  # noqa: E402
from napari_vbmd.measure import measure_vbmd  # noqa: E402

FAST = dict(voxel_mm=0.25, n_slices=12)


@pytest.fixture(scope="module")
def right():
    return gen.generate(gen.IndependentSpec(seed=4010, erosions=2, motion_grade=2, **FAST))


@pytest.fixture(scope="module")
def left():
    return gen.generate(gen.IndependentSpec(seed=4010, hand="left", erosions=2, motion_grade=2, **FAST))


def test_deterministic(right):
    again = gen.generate(gen.IndependentSpec(seed=4010, erosions=2, motion_grade=2, **FAST))
    assert np.array_equal(again.image.data, right.image.data)
    assert np.array_equal(again.truth.data, right.truth.data)
    assert again.info == right.info


def test_seeds_differ(right, crop_and_whole):
    assert right.info["d100_mg_ha_cm3"] != crop_and_whole[0].info["d100_mg_ha_cm3"]
    assert right.info["params"]["mc2_width_mm"] != crop_and_whole[0].info["params"]["mc2_width_mm"]


@pytest.mark.parametrize("bad", [
    dict(seed=-1), dict(seed=1, hand="both"), dict(seed=1, field="hand"), dict(seed=1, scanner="xtremect3"),
    dict(seed=1, voxel_mm=0.01), dict(seed=1, voxel_mm=0.6), dict(seed=1, n_slices=3), dict(seed=1, n_slices=401),
    dict(seed=1, motion_grade=4), dict(seed=1, erosions=5), dict(seed=1, erosions=1.5), dict(seed=1, pose=(0, 0)),
    dict(seed=1, hand_in_header="yes"),
])
def test_spec_validation(bad):
    with pytest.raises(ValueError):
        gen.IndependentSpec(**bad)


def test_interface_and_to_dict():
    spec = gen.IndependentSpec(seed=3, pose=gen.Pose.draw(30))
    d = spec.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert isinstance(d["pose"]["shift_mm"], list) and len(d["pose"]["tilt_deg"]) == 2
    assert gen.GENERATOR == "independent4" and gen.GENERATOR_VERSION == 1
    assert set(gen.CALIBRATIONS) == {"xtremect1", "xtremect2"}
    p = gen.Pose.draw(30)
    assert p == gen.Pose.draw(30) and p != gen.Pose.draw(31)
    assert abs(p.rotation_deg) <= 8 and all(abs(s) <= 2 for s in p.shift_mm)
    assert np.hypot(*p.tilt_deg) <= 3 and abs(p.z_shift_mm) <= 0.3
    with pytest.raises(TypeError):
        gen.generate({"seed": 1})


def test_image_and_truth(right):
    img, truth = right.image, right.truth
    assert img.data.dtype == np.int16 and truth.data.dtype == np.uint8
    assert img.unit == "native" and img.kind == "image" and truth.kind == "mask"
    assert img.hand is None and img.header["generator"] == "independent4"
    assert img.shape == truth.shape and img.spacing == (0.25, 0.25, 0.25)
    t = truth.data.astype(bool)
    assert t.any() and set(np.unique(truth.data)) <= {0, 1}
    # MC2 only: one connected solid, at the radial (low x) side of the crop, starting distal of slice 0
    labels, n = ndimage.label(t)
    assert n == 1
    first = np.nonzero(t.any(axis=(1, 2)))[0][0]
    assert 1 <= first * 0.25 <= 3.5
    xs = np.nonzero(t.any(axis=(0, 1)))[0]
    assert xs.mean() < t.shape[2] / 2
    d = img.density()
    assert np.mean(d[t]) == pytest.approx(right.info["d100_mg_ha_cm3"], rel=1e-5)
    assert 150 < right.info["d100_mg_ha_cm3"] < 600
    # the truth excludes the erosion pits, which the image fills with soft tissue
    assert len(right.info["params"]["erosion_pits"]) == 2


def test_written_files_round_trip(right, tmp_path):
    paths = gen.write_case(right, tmp_path, "c")
    assert paths == gen.case_paths(tmp_path, "c")
    image = read_scan(paths["image"])
    mask = read_mask(paths["mask"], like=image)
    assert image.calibration == gen.CALIBRATIONS["xtremect1"]
    assert np.array_equal(image.data, right.image.data)
    assert np.array_equal(mask.data.astype(bool), right.truth.data.astype(bool))
    info = json.loads(paths["truth"].read_text())
    assert info["d100_mg_ha_cm3"] == pytest.approx(measure_vbmd(image, mask).d100_mg_ha_cm3, abs=1e-3)
    assert info["spec"] == right.info["spec"]
    assert gen.is_cached(tmp_path, "c", gen.IndependentSpec(seed=4010, erosions=2, motion_grade=2, **FAST))
    assert not gen.is_cached(tmp_path, "c", gen.IndependentSpec(seed=4010, erosions=1, motion_grade=2, **FAST))
    assert not gen.is_cached(tmp_path, "other", gen.IndependentSpec(seed=4010, **FAST))
    with pytest.raises(FileExistsError):
        gen.write_case(right, tmp_path, "c")
    gen.write_case(right, tmp_path, "c", overwrite=True)
    paths["mask"].unlink()
    assert not gen.is_cached(tmp_path, "c", gen.IndependentSpec(seed=4010, erosions=2, motion_grade=2, **FAST))


def test_xtremect2_calibration_round_trip(tmp_path):
    case = gen.generate(gen.IndependentSpec(seed=4012, scanner="xtremect2", hand_in_header=True, voxel_mm=0.3,
                                            n_slices=8))
    assert case.image.hand == "right" and case.truth.hand == "right"
    paths = gen.write_case(case, tmp_path, "x2")
    image = read_scan(paths["image"])
    assert image.calibration == gen.CALIBRATIONS["xtremect2"]
    assert np.allclose(image.density(), case.image.density())


def test_left_is_exact_mirror(right, left):
    assert np.array_equal(left.image.data, right.image.data[:, :, ::-1])
    assert np.array_equal(left.truth.data, right.truth.data[:, :, ::-1])
    assert left.info["d100_mg_ha_cm3"] == pytest.approx(right.info["d100_mg_ha_cm3"])
    # the field's place in the scanner is mirrored
    v, nx = 0.25, right.image.shape[2]
    fov = right.info["params"]["fov_vox"]
    assert left.image.origin[2] / v == pytest.approx(fov - right.image.origin[2] / v - nx)
    assert left.image.origin[1] == right.image.origin[1]


@pytest.fixture(scope="module")
def crop_and_whole():
    spec = dict(seed=4013, voxel_mm=0.3, n_slices=30)
    return (gen.generate(gen.IndependentSpec(field="crop", **spec)),
            gen.generate(gen.IndependentSpec(field="whole", **spec)))


def test_whole_field_shows_the_row_of_heads(crop_and_whole):
    crop, whole = crop_and_whole
    dc, dw = crop.image.density(), whole.image.density()
    assert whole.image.shape[2] > crop.image.shape[2] * 1.8
    assert (dw > 500).sum() > 2 * (dc > 500).sum()
    # a slice through the heads (6 mm proximal of MC2's tip): MC2..MC5 (and the thumb when drawn) are
    # separate bones; MC2 is the most radial of the four heads, the thumb radial and palmar of it
    # (MC3 may touch MC2 through the blur: MC2's own voxels are taken out first)
    t = whole.truth.data.astype(bool)
    k = t.shape[0] - 1
    bone = ndimage.binary_fill_holes(ndimage.gaussian_filter(dw[k], 1.0) > 250)
    others = bone & ~ndimage.binary_dilation(t[k], iterations=2)
    labels, n = ndimage.label(others)
    sizes = ndimage.sum(others, labels, range(1, n + 1)) * 0.09
    big = [i + 1 for i, s in enumerate(sizes) if s > 8.0]  # sections over 8 mm2
    centres = [ndimage.center_of_mass(others, labels, i) for i in big]
    mc2_y, mc2_x = ndimage.center_of_mass(t[k])
    thumb = whole.info["params"]["thumb"]
    assert sum(c[1] > mc2_x for c in centres) == 3  # MC3, MC4, MC5 in a row on MC2's ulnar side
    radial = [c for c in centres if c[1] < mc2_x]
    assert len(radial) == (1 if thumb else 0)
    if thumb:
        assert radial[0][0] > mc2_y  # the thumb lies palmar of MC2
    assert whole.info["truth_voxels"] == pytest.approx(crop.info["truth_voxels"], rel=0.02)


def test_pose_changes_voxels_keeps_volume(crop_and_whole, tmp_path):
    crop = crop_and_whole[0]
    spec = gen.IndependentSpec(seed=4013, voxel_mm=0.3, n_slices=30, pose=gen.Pose.draw(40130))
    moved = gen.generate(spec)
    gen.write_case(moved, tmp_path, "moved")  # a repeat scan is found again (its pose is written to 6 decimals)
    assert gen.is_cached(tmp_path, "moved", spec)
    assert not gen.is_cached(tmp_path, "moved", gen.IndependentSpec(seed=4013, voxel_mm=0.3, n_slices=30,
                                                                    pose=gen.Pose.draw(40131)))
    assert not np.array_equal(moved.truth.data, crop.truth.data) or moved.truth.shape != crop.truth.shape
    # a repeat scan of the same hand: the bone's volume in the field stays within a few per cent
    assert moved.info["truth_voxels"] == pytest.approx(crop.info["truth_voxels"], rel=0.06)
    assert moved.info["params"]["mc2_width_mm"] == crop.info["params"]["mc2_width_mm"]
    assert moved.info["params"]["n_rods"] == crop.info["params"]["n_rods"]  # the same trabeculae


def test_independence_of_other_generators():
    code = ("import sys; sys.path.insert(0, %r); import independent4; "
            "bad = [m for m in sys.modules if m.startswith('napari_vbmd.phantom') or m.split('.')[0] in "
            "('independent', 'independent3')]; print(bad); sys.exit(1 if bad else 0)") % str(BENCH)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_evaluation_specs_balance():
    specs = gen.evaluation_specs()
    assert len(specs) == 48 and len({s.seed for s in specs}) == 48
    assert specs[0].seed == gen.EVALUATION_FIRST_SEED == 80_000
    pairs = Counter((s.motion_grade, s.erosions) for s in specs)
    assert set(pairs) == {(m, e) for m in range(4) for e in range(4)} and set(pairs.values()) == {3}
    assert Counter(s.field for s in specs) == {"whole": 16, "crop": 32}
    assert Counter(s.hand for s in specs) == {"left": 24, "right": 24}
    grids = Counter((s.voxel_mm, s.scanner, s.n_slices) for s in specs)
    assert grids == {(0.082, "xtremect1", 110): 16, (0.061, "xtremect2", 168): 16, (0.082, "xtremect2", 110): 16}
    assert specs == gen.evaluation_specs()
    assert [s.seed for s in gen.evaluation_specs(5, 100)] == [100, 101, 102, 103, 104]


def test_precision_specs():
    groups = gen.precision_specs()
    assert len(groups) == 20 and all(len(g) == 3 for g in groups)
    assert groups[0][0].seed == gen.PRECISION_FIRST_SEED == 85_000
    for a, g in enumerate(groups):
        assert len({s.seed for s in g}) == 1 and len({s.hand for s in g}) == 1 and len({s.voxel_mm for s in g}) == 1
        assert all(s.field == "crop" for s in g)
        assert [s.motion_grade for s in g] == [(a + r) % 3 for r in range(3)]
        assert [s.pose for s in g] == [gen.Pose.draw(g[0].seed * 10 + r) for r in range(3)]
    flat = [s for g in groups for s in g]
    assert {s.hand for s in flat} == {"left", "right"} and {s.voxel_mm for s in flat} == {0.082, 0.061}
    assert any(s.erosions for s in flat) and any(not s.erosions for s in flat)
    assert len(gen.precision_specs(4, 2)) == 4
