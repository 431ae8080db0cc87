"""The third independent validation family (benchmarks/independent3): determinism, geometry, the
truth convention, mirror images, calibration round trip, the hand left out of the header, the two
sets, and that it imports no other phantom generator. Small specs (coarse voxels, few slices)."""
from __future__ import annotations

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

from independent3 import (  # noqa: E402
    CALIBRATIONS, IndependentSpec, Pose, case_paths, evaluation_specs, generate, is_cached, precision_specs, write_case,
)

V = 0.25


def small(**kw) -> IndependentSpec:
    base = dict(seed=11, voxel_mm=V, n_slices=24)
    base.update(kw)
    return IndependentSpec(**base)


_CACHE: dict = {}


def case_of(spec):
    if spec not in _CACHE:
        _CACHE[spec] = generate(spec)
    return _CACHE[spec]


def _axis_index(case, which: int, k: int):
    """(j, i) of a metacarpal's axis at slice k of a right-hand case."""
    info = case.info
    mc = info["anatomy"]["metacarpals"][which]
    v = info["spacing_mm"][0]
    z = (mc["tip_z"] - info["slice0_distal_of_mc2_tip_mm"]) + k * v
    x = mc["x0"] + mc["fan_x"] * (z - mc["tip_z"])
    y = mc["y0"] + mc["fan_y"] * (z - mc["tip_z"])
    rect = info["field_rect_hand_frame_mm"]
    return int(round((y - rect["y0"]) / v)), int(round((x - rect["x0"]) / v))


def test_deterministic():
    spec = small(motion_grade=2, erosions=1)
    a, b = case_of(spec), generate(spec)
    assert np.array_equal(a.image.data, b.image.data)
    assert np.array_equal(a.truth.data, b.truth.data)
    assert a.info["d100_mg_ha_cm3"] == b.info["d100_mg_ha_cm3"]


def test_geometry():
    spec = small(voxel_mm=0.3, n_slices=20, scanner="xtremect2")
    case = case_of(spec)
    img, truth = case.image, case.truth
    assert img.shape[0] == 20 and img.spacing == (0.3, 0.3, 0.3)
    assert img.data.dtype == np.int16 and truth.data.dtype == np.uint8
    assert truth.shape == img.shape and truth.spacing == img.spacing and truth.origin == img.origin
    pos = np.array(case.info["position_voxels_xyz"][::-1])
    assert np.allclose(np.array(img.origin), pos * 0.3)
    assert img.calibration == CALIBRATIONS["xtremect2"] and img.unit == "native"
    assert set(np.unique(truth.data)) <= {0, 1}


def test_truth_convention():
    case = case_of(small())
    truth = case.truth.data.astype(bool)
    labels, n = ndimage.label(truth, structure=np.ones((3, 3, 3)))
    assert n == 1
    k = truth.shape[0] // 2
    assert truth[(k, *_axis_index(case, 0, k))]  # MC2's axis
    j3, i3 = _axis_index(case, 1, k)
    if 0 <= i3 < truth.shape[2]:
        assert not truth[k, j3, i3]  # MC3 is not MC2
    assert not truth[0].any()  # slice 0 is distal of MC2's tip: joint space and phalanx only
    # MC3 is bone in the image where it is not truth
    dens = case.image.density()
    if 0 <= i3 < truth.shape[2]:
        assert dens[k, j3 - 1:j3 + 2, i3 - 1:i3 + 2].mean() > 100


def test_erosions_remove_truth():
    plain = case_of(small(seed=12, n_slices=28))
    eroded = case_of(small(seed=12, n_slices=28, erosions=3))
    a, b = plain.truth.data.astype(bool), eroded.truth.data.astype(bool)
    assert not (b & ~a).any()  # a pit only takes voxels away
    assert (a & ~b).sum() > 5
    assert len(eroded.info["erosion_pits"]) == 3
    # the pit holds soft tissue, not bone
    removed = a & ~b
    assert eroded.image.density()[removed].mean() < plain.image.density()[removed].mean() - 150


def test_left_is_mirror_of_right():
    right = case_of(small(seed=13, motion_grade=1, erosions=1))
    left = generate(small(seed=13, motion_grade=1, erosions=1, hand="left"))
    assert np.array_equal(left.image.data, right.image.data[:, :, ::-1])
    assert np.array_equal(left.truth.data, right.truth.data[:, :, ::-1])
    width = right.info["scanner_field_px"]
    nx = right.image.shape[2]
    assert left.info["position_voxels_xyz"][0] == width - (right.info["position_voxels_xyz"][0] + nx)
    assert left.info["d100_mg_ha_cm3"] == pytest.approx(right.info["d100_mg_ha_cm3"])


def test_files_round_trip_and_hand_absent(tmp_path):
    spec = small(seed=14, field="whole", voxel_mm=0.35, n_slices=16)
    case = case_of(spec)
    paths = write_case(case, tmp_path, "c14")
    assert paths == case_paths(tmp_path, "c14") and is_cached(tmp_path, "c14", spec)
    assert not is_cached(tmp_path, "c14", small(seed=15, field="whole", voxel_mm=0.35, n_slices=16))
    with pytest.raises(FileExistsError):
        write_case(case, tmp_path, "c14")
    image = read_scan(paths["image"])
    mask = read_mask(paths["mask"], like=image)
    assert image.hand is None  # not in the header by default
    assert np.array_equal(image.data, case.image.data)
    assert np.allclose(image.origin, case.image.origin) and np.allclose(image.spacing, case.image.spacing)
    cal = image.calibration
    ref = CALIBRATIONS["xtremect1"]
    assert cal.density_slope == pytest.approx(ref.density_slope) and cal.mu_scaling == ref.mu_scaling
    assert cal.density_intercept == pytest.approx(ref.density_intercept)
    # the written integers are the intended densities: native = (density - intercept) / slope * mu_scaling
    dens = image.density()
    assert np.allclose(dens, image.data * (ref.density_slope / ref.mu_scaling) + ref.density_intercept, atol=1e-3)
    corner = dens[:, :3, :3]  # air around the hand in a whole-hand field: zero attenuation
    assert abs(np.median(corner) - ref.density_intercept) < 40
    assert abs(np.median(dens[case.soft]) - 0) < 80  # fat and muscle, near water
    truth_json = json.loads(paths["truth"].read_text())
    assert truth_json["d100_mg_ha_cm3"] == pytest.approx(measure_vbmd(image, mask).d100_mg_ha_cm3, abs=1e-6)
    assert 100 < truth_json["d100_mg_ha_cm3"] < 700
    assert truth_json["spec"]["field"] == "whole" and "anatomy" in truth_json


def test_hand_in_header(tmp_path):
    case = generate(small(seed=16, voxel_mm=0.4, n_slices=12, hand="left", hand_in_header=True))
    paths = write_case(case, tmp_path, "c16")
    assert read_scan(paths["image"]).hand == "left"


def test_pose_moves_same_anatomy():
    spec = small(seed=17, n_slices=24)
    base = case_of(spec)
    posed = generate(small(seed=17, n_slices=24, pose=Pose.draw(5)))
    assert not np.array_equal(base.image.data, posed.image.data)
    assert base.info["anatomy"] == posed.info["anatomy"]
    n0, n1 = base.truth.data.sum(), posed.truth.data.sum()
    assert abs(int(n1) - int(n0)) / n0 < 0.15
    p = Pose.draw(123)
    assert abs(p.rotation_deg) <= 8 and all(abs(s) <= 2 for s in p.shift_mm)
    assert np.hypot(*p.tilt_deg) <= 3 and abs(p.z_shift_mm) <= 0.3 and p.noise_seed == 123


def test_sets():
    specs = evaluation_specs()
    assert len(specs) == 48 and specs[0].seed == 90_000 and len({s.seed for s in specs}) == 48
    assert {(s.motion_grade, s.erosions) for s in specs} == {(m, e) for m in range(4) for e in range(4)}
    assert {s.hand for s in specs} == {"left", "right"} and {s.voxel_mm for s in specs} == {0.082, 0.061}
    whole = sum(s.field == "whole" for s in specs)
    assert 13 <= whole <= 19
    assert {(s.motion_grade, s.erosions) for s in specs if s.field == "whole"} == {(m, e) for m in range(4) for e in range(4)}
    for s in specs:
        assert s.n_slices == (168 if s.voxel_mm == 0.061 else 110) and not s.hand_in_header and s.pose is None
        assert s.scanner == "xtremect2" or s.voxel_mm == 0.082
    groups = precision_specs()
    assert len(groups) == 20 and all(len(g) == 3 for g in groups) and groups[0][0].seed == 95_000
    for g in groups:
        assert len({s.seed for s in g}) == 1 and len({s.pose for s in g}) == 3
        assert {s.motion_grade for s in g} <= {0, 1, 2}


def test_imports_no_other_generator():
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "import independent3, independent3.anatomy, independent3.render, independent3.acquire\n"
        "independent3.generate(independent3.IndependentSpec(seed=3, voxel_mm=0.45, n_slices=8))\n"
        "bad = [m for m in sys.modules if m.startswith('napari_vbmd.phantom') or m == 'independent' "
        "or m.startswith('independent.')]\n"
        "assert not bad, bad\n"
    ) % str(BENCHMARKS)
    subprocess.run([sys.executable, "-c", code], check=True)


def test_benchmark_scripts_keep_the_families_apart(tmp_path):
    import eval_independent
    import precision

    spec = evaluation_specs(1)[0]
    assert eval_independent.case_name(spec) == f"indep_{spec.seed}"  # unchanged by default
    assert eval_independent.case_name(spec, "independent3") == f"indep3_{spec.seed}"
    row = {"case": "x", "dice": 0.99, "d100_error_pct": 0.1, "failure": "", "seconds": 1.0, "field": "crop",
           "voxel_mm": 0.082, "motion": 0, "erosions": 0}
    paths3 = eval_independent.write_outputs(tmp_path, "m", "m", [dict(row, family="independent3")], "independent3")
    paths2 = eval_independent.write_outputs(tmp_path, "m", "m", [row])
    assert [p.name for p in paths3] == ["independent3-validation-m.json", "independent3-validation-m.csv"]
    assert [p.name for p in paths2] == ["independent-validation-m.json", "independent-validation-m.csv"]
    assert json.loads(paths3[0].read_text())["family"] == "independent3"
    assert "family" not in json.loads(paths2[0].read_text())
    groups = precision.GROUPS["independent3"](2, 2)
    assert [c["name"] for g in groups for c in g] == [
        "prec_indep3_95000_r0", "prec_indep3_95000_r1", "prec_indep3_95001_r0", "prec_indep3_95001_r1"]


def test_review_flag_evaluation_on_a_family_gives_the_hand_and_judges_the_lines(tmp_path):
    import eval_independent
    import eval_review_flags

    spec = small(seed=12, hand="left", voxel_mm=0.2, n_slices=40)
    case = eval_independent.ensure_cases(tmp_path, [spec], "independent3")[0]
    row, reasons = eval_review_flags.evaluate_case(case, "default", 1, 0.10, hand="left")
    truth = read_mask(case["mask"], like=read_scan(case["image"])).data != 0
    assert row["case"] == "indep3_12" and 0.0 <= row["dice"] <= 1.0
    assert row["within_lines"] == (row["dice"] >= 0.97 and abs(row["d100_error_pct"]) <= 1.5)
    assert row["need_correction_flagged"] <= row["need_correction"] <= row["mask_slices"] + truth.shape[0]
    assert sum(reasons.values()) >= row["flagged"]
    # the classical method takes MC3 in with MC2 on this crop (twice the volume): refused, a row of its own
    two, none = eval_review_flags.evaluate_case(case, "classical", 1, 0.10, hand="left")
    assert "holds two bones side by side" in two["refused"] and two["within_lines"] is False and not none
    # the hand not given and not in the header of a crop: refused with one line, a row of its own
    refused, none = eval_review_flags.evaluate_case(case, "classical", 1, 0.10, hand="auto")
    assert refused["case"] == "indep3_12" and "cannot tell which hand" in refused["refused"]
    assert refused["within_lines"] is False and not none
