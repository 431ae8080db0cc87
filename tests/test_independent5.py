"""The fifth independent phantom family (benchmarks/independent5): interface, determinism, truth, designs.

Only small grids and seeds 5000-5019 here: the evaluation (60 000-60 047) and precision (65 000-65 019)
seeds are never generated for tests. No segmentation model is run on this family."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from napari_vbmd.io import read_mask, read_scan
from napari_vbmd.measure import measure_vbmd

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import independent5 as fam  # noqa: E402
from independent5 import IndependentSpec, Pose  # noqa: E402

SMALL = dict(voxel_mm=0.25, n_slices=12)
LONG = dict(voxel_mm=0.25, n_slices=40)  # 10 mm: the whole head and its joint margin
_CACHE = {}


def gen(**kw):
    key = tuple(sorted((k, repr(v)) for k, v in kw.items()))
    if key not in _CACHE:
        _CACHE[key] = fam.generate(IndependentSpec(**kw))
    return _CACHE[key]


def test_constants():
    assert fam.GENERATOR == "independent5" and fam.GENERATOR_VERSION == 1
    assert fam.EVALUATION_FIRST_SEED == 60_000 and fam.PRECISION_FIRST_SEED == 65_000


def test_deterministic_and_seeds_differ():
    a = fam.generate(IndependentSpec(seed=5001, **SMALL))
    b = gen(seed=5001, **SMALL)
    assert np.array_equal(a.image.data, b.image.data) and np.array_equal(a.truth.data, b.truth.data)
    assert json.dumps(a.info, sort_keys=True) == json.dumps(b.info, sort_keys=True)
    assert a.image.origin == b.image.origin
    c = gen(seed=5002, **SMALL)
    assert c.image.shape != a.image.shape or not np.array_equal(c.image.data, a.image.data)
    assert c.info["params"]["mc2_width_mm"] != a.info["params"]["mc2_width_mm"]


@pytest.mark.parametrize("bad", [
    dict(seed=-1), dict(seed=1.5), dict(seed=1, hand="both"), dict(seed=1, field="half"),
    dict(seed=1, scanner="xtremect3"), dict(seed=1, voxel_mm=0.01), dict(seed=1, voxel_mm=0.6),
    dict(seed=1, n_slices=3), dict(seed=1, n_slices=401), dict(seed=1, motion_grade=4),
    dict(seed=1, motion_grade=-1), dict(seed=1, erosions=5), dict(seed=1, erosions=1.0),
    dict(seed=1, erosions=True), dict(seed=1, pose=(0, 0)), dict(seed=1, hand_in_header=1),
])
def test_bad_specs_are_refused(bad):
    with pytest.raises(ValueError):
        IndependentSpec(**bad)


def test_to_dict_is_json_and_round_trips():
    spec = IndependentSpec(seed=5003, hand="left", field="whole", voxel_mm=0.061, scanner="xtremect2",
                           n_slices=168, motion_grade=2, erosions=3, hand_in_header=True, pose=Pose.draw(7))
    d = spec.to_dict()
    assert json.loads(json.dumps(d)) == d
    pose = Pose(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["pose"].items()})
    back = IndependentSpec(**{**d, "pose": pose})
    assert back.to_dict() == d


def test_pose_draw_ranges():
    for s in range(40):
        p = Pose.draw(s)
        assert abs(p.rotation_deg) <= 8 and all(abs(v) <= 2 for v in p.shift_mm)
        assert np.hypot(*p.tilt_deg) <= 3.0 + 1e-9 and abs(p.z_shift_mm) <= 0.3
        assert p == Pose.draw(s)
    assert Pose.draw(1).noise_seed != Pose.draw(2).noise_seed


def test_truth_is_binary_one_component_and_scan_is_native_int16():
    case = gen(seed=5001, **LONG)
    t = case.truth.data
    assert t.dtype == np.uint8 and set(np.unique(t)) == {0, 1}
    _, n = ndimage.label(t, structure=np.ones((3, 3, 3)))
    assert n == 1
    assert case.image.data.dtype == np.int16 and case.image.unit == "native"
    assert case.image.calibration.density_slope == pytest.approx(1441.13599)
    assert case.truth.same_grid(case.image)
    info = case.info
    assert info["truth_voxels"] == int(t.sum()) and info["mean_slice_area_mm2"] > 50
    assert 13 <= info["params"]["mc2_width_mm"] <= 15
    assert 15 <= info["noise_sd_fat_mg_ha_cm3"] <= 200
    assert json.loads(json.dumps(info)) == info
    # the field lies at whole-voxel positions inside the scanner's 126 mm field of view
    v = case.image.spacing[1]
    assert case.image.origin[0] == 0.0
    for o, n_vox in zip(case.image.origin[1:], case.image.shape[1:]):
        assert abs(o / v - round(o / v)) < 1e-6 and 0 <= o and o + n_vox * v <= 126.0 + 1e-6


def test_xtremect2_calibration_on_an_0082_grid():
    case = gen(seed=5004, voxel_mm=0.25, n_slices=12, scanner="xtremect2")
    assert case.image.calibration.density_slope == pytest.approx(1632.71997)
    assert case.image.calibration.density_intercept == pytest.approx(-396.135986)


def test_left_hand_is_the_mirror_image_of_the_right():
    right = gen(seed=5001, **SMALL)
    left = gen(seed=5001, hand="left", **SMALL)
    assert np.array_equal(left.truth.data, right.truth.data[:, :, ::-1])
    assert np.array_equal(left.image.data, right.image.data[:, :, ::-1])
    nx, v = right.image.shape[2], right.image.spacing[2]
    # mirrored in the field of view too: the two fields are symmetric about its centre
    fov_n = round(126.0 / v)
    assert round(left.image.origin[2] / v) == fov_n - 1 - (round(right.image.origin[2] / v) + nx - 1)


def test_mc2_is_the_radial_most_metacarpal_of_a_whole_right_hand():
    case = gen(seed=5005, field="whole", **LONG)  # seed % 5 == 0: no thumb in the field
    assert not case.info["params"]["hand"]["has_thumb"]
    k = 32  # 8 mm proximal: past MC2's phalanx base, through the heads of the row
    dens = ndimage.median_filter(case.image.density()[k], 3)
    truth = case.truth.data[k].astype(bool)
    assert truth.any()
    tx = np.nonzero(truth)[1].mean()
    others = (dens > 350) & ~ndimage.binary_dilation(truth, iterations=3)
    lab, n = ndimage.label(others)
    big = [i for i in range(1, n + 1) if (lab == i).sum() >= 20]
    assert len(big) >= 2  # the other metacarpals (and phalanx bases)
    for i in big:
        assert np.nonzero(lab == i)[1].mean() > tx
    # and the truth is the densest object's region, not soft tissue
    assert dens[truth].mean() > dens[~truth & (dens > -50)].mean()


def test_erosions_remove_truth_voxels():
    plain = gen(seed=5007, **LONG)
    eroded = gen(seed=5007, erosions=2, **LONG)
    assert eroded.info["truth_voxels"] < plain.info["truth_voxels"]
    assert not (eroded.truth.data & ~plain.truth.data).any()  # only removed, nothing added
    assert eroded.info["params"]["mc2_width_mm"] == plain.info["params"]["mc2_width_mm"]
    assert len(eroded.info["params"]["pits"]) == 2


def test_write_read_measure_and_cache(tmp_path):
    spec = IndependentSpec(seed=5006, **SMALL)
    case = gen(seed=5006, **SMALL)
    paths = fam.case_paths(tmp_path, "c")
    assert paths == {"image": tmp_path / "c.aim", "mask": tmp_path / "c_mask.aim", "truth": tmp_path / "c_truth.json"}
    assert not fam.is_cached(tmp_path, "c", spec)
    fam.write_case(case, tmp_path, "c")
    assert fam.is_cached(tmp_path, "c", spec)
    assert not fam.is_cached(tmp_path, "c", IndependentSpec(seed=5006, voxel_mm=0.25, n_slices=13))
    with pytest.raises(FileExistsError):
        fam.write_case(case, tmp_path, "c")
    fam.write_case(case, tmp_path, "c", overwrite=True)
    image = read_scan(paths["image"])
    mask = read_mask(paths["mask"], like=image)
    assert np.array_equal(image.data, case.image.data) and np.array_equal(mask.data != 0, case.truth.data != 0)
    d100 = measure_vbmd(image, mask).d100_mg_ha_cm3
    assert d100 == pytest.approx(case.info["d100_mg_ha_cm3"], abs=1e-6)
    info = json.loads(paths["truth"].read_text())
    assert info["spec"] == spec.to_dict() and info["generator"] == "independent5"


def test_pose_keeps_the_anatomy_and_moves_it():
    base = gen(seed=5008, **LONG)
    pose = Pose(rotation_deg=6.0, shift_mm=(1.5, -1.5), tilt_deg=(1.5, -1.0), z_shift_mm=0.2, noise_seed=11)
    moved = gen(seed=5008, pose=pose, **LONG)
    assert moved.image.shape == base.image.shape
    a, b = base.info["truth_voxels"], moved.info["truth_voxels"]
    assert abs(a - b) / a < 0.05
    assert moved.info["params"]["mc2_width_mm"] == base.info["params"]["mc2_width_mm"]
    ca = np.array(ndimage.center_of_mass(base.truth.data))
    cb = np.array(ndimage.center_of_mass(moved.truth.data))
    assert np.hypot(*(ca - cb)[1:]) * 0.25 > 1.0  # moved by more than a millimetre in the slice plane
    again = gen(seed=5008, pose=Pose(**{**pose.__dict__, "noise_seed": 12}), **LONG)
    assert np.array_equal(again.truth.data, moved.truth.data)  # the noise seed only changes noise/placement
    assert not np.array_equal(again.image.data, moved.image.data)


def test_hand_in_header(tmp_path):
    case = gen(seed=5009, hand="left", hand_in_header=True, **SMALL)
    assert case.image.hand == "left"
    assert gen(seed=5009, hand="left", **SMALL).image.hand is None
    fam.write_case(case, tmp_path, "h")
    assert read_scan(fam.case_paths(tmp_path, "h")["image"]).hand == "left"


def test_motion_changes_the_image_not_the_truth():
    still = gen(seed=5010, **SMALL)
    moving = gen(seed=5010, motion_grade=3, **SMALL)
    assert np.array_equal(still.truth.data, moving.truth.data)
    diff = np.abs(still.image.density() - moving.image.density())
    assert diff.mean() > 5.0


def test_evaluation_design():
    specs = fam.evaluation_specs()
    assert len(specs) == 48 and [s.seed for s in specs] == list(range(60_000, 60_048))
    pairs = Counter((s.motion_grade, s.erosions) for s in specs)
    assert len(pairs) == 16 and set(pairs.values()) == {3}
    assert Counter(s.field for s in specs) == {"whole": 16, "crop": 32}
    assert Counter(s.hand for s in specs) == {"left": 24, "right": 24}
    assert Counter((s.voxel_mm, s.scanner, s.n_slices) for s in specs) == {
        (0.082, "xtremect1", 110): 16, (0.061, "xtremect2", 168): 16, (0.082, "xtremect2", 110): 16}
    assert sum(s.hand_in_header for s in specs) == 16
    assert all(s.pose is None for s in specs)
    assert fam.evaluation_specs() == specs
    assert [s.seed for s in fam.evaluation_specs(5, first_seed=10)] == list(range(10, 15))


def test_precision_design():
    groups = fam.precision_specs()
    assert len(groups) == 20 and all(len(g) == 3 for g in groups)
    for a, g in enumerate(groups):
        seed = 65_000 + a
        assert all(s.seed == seed and s.field == "crop" for s in g)
        assert len({(s.hand, s.voxel_mm, s.scanner, s.n_slices, s.erosions) for s in g}) == 1
        assert [s.motion_grade for s in g] == [(a + r) % 3 for r in range(3)]
        assert [s.pose for s in g] == [Pose.draw(seed * 10 + r) for r in range(3)]
    firsts = [g[0] for g in groups]
    assert Counter(s.hand for s in firsts) == {"left": 10, "right": 10}
    assert [s.hand for s in firsts[:4]] in (["right", "left", "right", "left"], ["left", "right", "left", "right"])
    assert Counter((s.voxel_mm, s.scanner, s.n_slices) for s in firsts) == {
        (0.082, "xtremect1", 110): 10, (0.061, "xtremect2", 168): 10}
    assert sum(s.erosions > 0 for s in firsts) == 8


def test_imports_nothing_from_other_generators():
    code = ("import sys; sys.path.insert(0, %r); import independent5; "
            "bad = [m for m in sys.modules if m.startswith('napari_vbmd.phantom') or "
            "m.split('.')[0] in ('independent', 'independent3', 'independent4')]; print(bad)") % str(BENCH)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
