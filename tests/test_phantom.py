"""The phantom generator: truth that the measurement reproduces, anatomy and densities in the
study's ranges, both hands, both fields of view, motion and erosions, determinism, bad specs.

Phantoms here are small (coarse voxels, few slices) so each takes well under a second; anatomy is
defined in millimetres, so a coarse phantom has the same bones as a native-resolution one.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from napari_vbmd.errors import CancelledError, VbmdError
from napari_vbmd.io import read_mask, read_scan
from napari_vbmd.measure import measure_vbmd
from napari_vbmd.phantom import (
    FULL_FOV_VOXELS,
    PhantomSpec,
    cohort_specs,
    generate_cohort,
    generate_phantom,
    phantom_is_cached,
    write_phantom,
)

SMALL = dict(n_slices=40, spacing_mm=0.164)  # 6.6 mm along the bones: joint space, head and neck


@pytest.fixture(scope="session")
def right():
    return generate_phantom(PhantomSpec(seed=7, **SMALL))


@pytest.fixture(scope="session")
def left():
    return generate_phantom(PhantomSpec(seed=7, hand="left", **SMALL))


@pytest.fixture(scope="session")
def written(right, tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom")
    return right, write_phantom(right, out, "case")


def _density(phantom):
    return phantom.image.density()


def test_same_spec_gives_same_voxels(right):
    again = generate_phantom(PhantomSpec(seed=7, **SMALL))
    assert np.array_equal(again.image.data, right.image.data)
    assert np.array_equal(again.truth.data, right.truth.data)
    assert again.truth_info["d100_mg_ha_cm3"] == right.truth_info["d100_mg_ha_cm3"]
    other = generate_phantom(PhantomSpec(seed=8, **SMALL))
    assert not np.array_equal(other.truth.data, right.truth.data[: other.truth.data.shape[0]])


def test_left_hand_is_the_mirror_image_of_the_right(right, left):
    assert left.image.hand == "left" and right.image.hand == "right"
    assert np.array_equal(left.image.data, right.image.data[:, :, ::-1])
    assert np.array_equal(left.truth.data, right.truth.data[:, :, ::-1])
    assert left.truth_info["d100_mg_ha_cm3"] == pytest.approx(right.truth_info["d100_mg_ha_cm3"])


def test_left_hand_position_mirrors_in_the_full_field(right, left):
    # the crop of a left hand sits where the right hand's crop sits, reflected about the FOV centre
    h = right.image.spacing[2]
    full_n = round(FULL_FOV_VOXELS * 0.082 / h)
    nx = right.image.shape[2]
    x_right = right.truth_info["aim_position_xyz"][0]
    x_left = left.truth_info["aim_position_xyz"][0]
    assert x_left == full_n - x_right - nx
    assert left.image.origin[2] == pytest.approx(x_left * h)


def test_truth_d100_is_what_measure_vbmd_gives_on_the_written_files(written):
    phantom, paths = written
    image = read_scan(paths["image"])
    truth = read_mask(paths["mask"], like=image)
    result = measure_vbmd(image, truth)
    info = json.loads(paths["truth"].read_text())
    # both sum the stored integers' densities in float64 (the calibration survives the AIM log exactly);
    # only the summation order may differ
    assert result.d100_mg_ha_cm3 == pytest.approx(info["d100_mg_ha_cm3"], rel=1e-12)
    assert result.sd_mg_ha_cm3 == pytest.approx(info["sd_mg_ha_cm3"], rel=1e-6)
    assert result.n_voxels == info["n_voxels"] == int(phantom.truth.data.sum())
    # the AIM stores the voxel size as a 32-bit float
    assert result.volume_mm3 == pytest.approx(info["volume_mm3"], rel=1e-6)
    assert result.n_slices == info["n_slices_with_bone"]
    assert result.mean_slice_area_mm2 == pytest.approx(info["mean_slice_area_mm2"], rel=1e-6)
    # and the generator hit the D100 it aimed for
    assert info["d100_mg_ha_cm3"] == pytest.approx(info["d100_target_mg_ha_cm3"], abs=1.0)


def test_written_image_is_a_calibrated_aim_and_truth_a_char_127_aim(written):
    import py_aimio

    phantom, paths = written
    image = read_scan(paths["image"])
    assert image.kind == "image" and image.data.dtype == np.int16
    assert np.array_equal(image.data, phantom.image.data)
    assert image.calibration.density_slope == pytest.approx(phantom.image.calibration.density_slope, rel=1e-6)
    assert image.calibration.density_intercept == pytest.approx(phantom.image.calibration.density_intercept, rel=1e-6)
    assert image.calibration.mu_scaling == pytest.approx(8192.0)
    assert image.spacing == pytest.approx(phantom.image.spacing)
    assert image.origin == pytest.approx(phantom.image.origin)
    raw, _ = py_aimio.read_aim(str(paths["mask"]))
    raw = np.asarray(raw)
    assert raw.dtype.itemsize == 1 and set(np.unique(raw).tolist()) == {0, 127}
    mask = read_mask(paths["mask"])
    assert mask.kind == "mask"
    assert np.array_equal(mask.data, phantom.truth.data)
    assert "Density: slope" in mask.header["processing_log"]
    info = json.loads(paths["truth"].read_text())
    assert info["files"] == {"image": "case.aim", "mask": "case_mask.aim", "truth": "case_truth.json"}
    assert info["truth_convention"].startswith("MC2 periosteal envelope")


def test_write_refuses_to_overwrite(written):
    phantom, paths = written
    with pytest.raises(VbmdError, match="refusing to overwrite"):
        write_phantom(phantom, paths["image"].parent, "case")


def test_a_cached_phantom_is_reused_only_from_the_same_spec_and_generator(written, tmp_path):
    import shutil

    _, paths = written
    folder = paths["image"].parent
    assert phantom_is_cached(folder, "case", PhantomSpec(seed=7, **SMALL))
    assert not phantom_is_cached(folder, "case", PhantomSpec(seed=8, **SMALL))
    assert not phantom_is_cached(folder, "other", PhantomSpec(seed=7, **SMALL))
    for path in paths.values():
        shutil.copy(path, tmp_path / path.name)
    truth = json.loads((tmp_path / "case_truth.json").read_text())
    (tmp_path / "case_truth.json").write_text(json.dumps(dict(truth, generator_version=1)))
    assert not phantom_is_cached(tmp_path, "case", PhantomSpec(seed=7, **SMALL))  # an older generator's


def test_cortex_and_soft_tissue_densities_are_in_the_scanner_ranges(right):
    info = right.truth_info
    design = info["design"]
    assert 850.0 <= design["cortical_density_mg_ha_cm3"] <= 1050.0
    density = _density(right)
    truth = right.truth.data.astype(bool)
    # the brightest part of MC2 (its cortex) reads near the design density after blur and noise
    assert 750.0 <= np.percentile(density[truth], 99) <= 1250.0
    # air reads as air, soft tissue near water
    air = density[:, :3, :3]
    assert abs(float(air.mean()) - right.image.calibration.density_intercept) < 30.0
    background = density[~truth]
    soft = background[(background > -150) & (background < 150)]
    assert soft.size > 0.2 * background.size
    assert -60.0 < float(np.median(soft)) < 60.0


def test_mc3_and_phalanx_are_present_but_outside_the_truth(right):
    density = _density(right)
    truth = right.truth.data.astype(bool)
    bone_outside = (density > 500) & ~truth
    first = right.truth_info["first_slice"]
    # distal to the MC2 head: the base of the proximal phalanx, bone with no truth at all
    assert first > 2
    assert not truth[: first].any()
    assert bone_outside[: first - 2].sum() > 200
    # in slices through the MC2 head, a second bone (MC3) lies ulnar (larger x) of MC2
    k = first + (right.image.shape[0] - first) // 2
    xs_truth = np.flatnonzero(truth[k].any(axis=0))
    xs_other = np.flatnonzero(bone_outside[k].any(axis=0))
    assert xs_other.size and xs_other.max() > xs_truth.max() + 10
    # the truth is one connected piece
    from scipy import ndimage

    _, n_components = ndimage.label(truth)
    assert n_components == 1


def test_head_cortex_is_thinner_than_shaft_cortex(right):
    design = right.truth_info["design"]
    assert design["cortex_thickness_head_mm"] < design["cortex_thickness_shaft_mm"]
    assert 0.2 < design["cortex_thickness_head_mm"] < 0.6
    assert 0.8 < design["cortex_thickness_shaft_mm"] < 2.0


@pytest.mark.slow
def test_d100_cohort_spread_is_like_the_study():
    specs = cohort_specs(12, seed=11, n_slices=22, spacing_mm=0.33, motion_grade=0, erosions=0)
    d100 = [generate_phantom(spec).truth_info["d100_mg_ha_cm3"] for spec in specs]
    assert all(150.0 <= d <= 380.0 for d in d100), d100
    assert np.std(d100) > 15.0  # a spread, not one value
    assert 200.0 < np.mean(d100) < 340.0


def test_d100_target_is_honoured():
    phantom = generate_phantom(PhantomSpec(seed=4, d100_target=200.0, n_slices=30, spacing_mm=0.25))
    assert phantom.truth_info["d100_mg_ha_cm3"] == pytest.approx(200.0, abs=1.0)
    dense = generate_phantom(PhantomSpec(seed=4, d100_target=360.0, n_slices=30, spacing_mm=0.25))
    assert dense.truth_info["d100_mg_ha_cm3"] == pytest.approx(360.0, abs=1.0)
    # same anatomy, denser bone
    assert np.array_equal(dense.truth.data, phantom.truth.data)
    assert dense.truth_info["design"]["cortical_density_mg_ha_cm3"] > phantom.truth_info["design"]["cortical_density_mg_ha_cm3"]


@pytest.mark.slow
def test_full_field_of_view_is_1536_square_at_native_spacing():
    # 36 slices (3 mm): the fewest that reach the MC2 head of every seed
    phantom = generate_phantom(PhantomSpec(seed=7, fov="full", n_slices=36, spacing_mm=0.082))
    assert phantom.image.shape == (36, FULL_FOV_VOXELS, FULL_FOV_VOXELS)
    assert phantom.truth.shape == phantom.image.shape
    assert phantom.truth_info["aim_position_xyz"][:2] == [0, 0]


def test_full_field_holds_the_cropped_field(right):
    full = generate_phantom(PhantomSpec(seed=7, fov="full", **SMALL))
    x0, y0, _ = right.truth_info["aim_position_xyz"]
    nz, ny, nx = right.truth.shape
    assert full.truth.shape[1] == full.truth.shape[2] == round(FULL_FOV_VOXELS * 0.082 / 0.164)
    assert np.array_equal(full.truth.data[:, y0:y0 + ny, x0:x0 + nx], right.truth.data)
    assert full.truth.data.sum() == right.truth.data.sum()
    # the whole hand is in the full field: MC2 to MC5 in the proximal slices, air around the hand
    from scipy import ndimage

    def bones_in(section, spacing):
        solid = ndimage.binary_fill_holes(ndimage.gaussian_filter(section, 1.5) > 150)
        labels, n = ndimage.label(solid)
        areas = ndimage.sum(solid, labels, range(1, n + 1)) * spacing**2
        return int((areas > 15.0).sum())  # sections of metacarpals, not specks of noise

    density = full.image.density()
    assert bones_in(density[-1], 0.164) >= 4
    assert bones_in(right.image.density()[-1], 0.164) in (1, 2)  # MC2, MC3 (or part of it)
    assert np.median(density[-1, :5, :]) < -250


def test_erosions_cut_pits_out_of_the_truth(right):
    eroded = generate_phantom(PhantomSpec(seed=7, erosions=3, **SMALL))
    truth, pitted = right.truth.data.astype(bool), eroded.truth.data.astype(bool)
    assert pitted.sum() < truth.sum()
    assert not (pitted & ~truth).any()  # only removed, never added
    assert len(eroded.truth_info["design"]["erosions"]) == 3
    # where the truth lost voxels, the image lost bone (the pit holds soft tissue)
    lost = truth & ~pitted
    before, after = right.image.density()[lost], eroded.image.density()[lost]
    assert after.mean() < before.mean() - 150


def test_motion_changes_the_image_but_not_the_truth(right):
    moved = generate_phantom(PhantomSpec(seed=7, motion_grade=3, **SMALL))
    assert np.array_equal(moved.truth.data, right.truth.data)
    difference = np.abs(moved.image.density() - right.image.density())
    assert difference.mean() > 5.0
    mild = generate_phantom(PhantomSpec(seed=7, motion_grade=1, **SMALL))
    assert np.abs(mild.image.density() - right.image.density()).mean() < difference.mean()
    # the truth D100 is still what the image under the truth says
    assert measure_vbmd(moved.image, moved.truth).d100_mg_ha_cm3 == pytest.approx(
        moved.truth_info["d100_mg_ha_cm3"], abs=1e-3)


def test_scanner_generation_sets_the_calibration():
    first = generate_phantom(PhantomSpec(seed=7, n_slices=30, spacing_mm=0.25, scanner="xtremect1"))
    second = generate_phantom(PhantomSpec(seed=7, n_slices=30, spacing_mm=0.25, scanner="xtremect2"))
    assert first.image.calibration.density_slope != second.image.calibration.density_slope
    assert "XtremeCT II" in second.image.header["processing_log"]
    assert second.truth_info["d100_mg_ha_cm3"] == pytest.approx(second.truth_info["d100_target_mg_ha_cm3"], abs=1.0)


def test_progress_and_cancel():
    steps = []
    generate_phantom(PhantomSpec(seed=1, n_slices=40, spacing_mm=0.25),
                     progress=lambda k, n, message: steps.append((k, n)))
    assert steps and steps[-1][0] == steps[-1][1]
    with pytest.raises(CancelledError):
        generate_phantom(PhantomSpec(seed=1, n_slices=40, spacing_mm=0.25), cancel=lambda: True)


@pytest.mark.parametrize("changes, words", [
    ({"hand": "both"}, "hand"),
    ({"fov": "wide"}, "field of view"),
    ({"n_slices": 2}, "number of slices"),
    ({"n_slices": 1000}, "number of slices"),
    ({"spacing_mm": 0.0}, "spacing"),
    ({"spacing_mm": "thin"}, "spacing"),
    ({"motion_grade": 4}, "motion grade"),
    ({"erosions": -1}, "erosions"),
    ({"seed": -3}, "seed"),
    ({"d100_target": 2000.0}, "D100 target"),
    ({"scanner": "ct"}, "scanner"),
])
def test_bad_specs_are_refused_in_one_line(changes, words):
    spec = dataclasses.replace(PhantomSpec(), **changes)
    with pytest.raises(VbmdError) as caught:
        generate_phantom(spec)
    message = str(caught.value)
    assert words in message and "\n" not in message


def test_too_few_slices_to_reach_mc2_is_refused():
    with pytest.raises(VbmdError, match="MC2 is not in the volume"):
        generate_phantom(PhantomSpec(seed=3, n_slices=4, spacing_mm=0.082))


def test_cohort_writes_cases_and_index(tmp_path):
    rows = generate_cohort(tmp_path, 2, seed=5, n_slices=24, spacing_mm=0.25)
    assert [r["name"] for r in rows] == ["phantom_5_000", "phantom_5_001"]
    index = (tmp_path / "cohort.csv").read_text().splitlines()
    assert index[0].startswith("name,image,mask,truth,d100_mg_ha_cm3") and len(index) == 3
    for row in rows:
        image = read_scan(row["image"])
        assert measure_vbmd(image, read_mask(row["mask"], like=image)).d100_mg_ha_cm3 == pytest.approx(
            row["d100_mg_ha_cm3"], abs=1e-3)
    with pytest.raises(VbmdError, match="refusing to overwrite"):
        generate_cohort(tmp_path, 2, seed=5, n_slices=24, spacing_mm=0.25)
    with pytest.raises(VbmdError, match="positive integer"):
        generate_cohort(tmp_path, 0)


def _autocorrelation(values, region, axis, lag):
    x = np.where(region, values, np.nan)
    x = x - np.nanmean(x)
    a = np.take(x, range(lag, x.shape[axis]), axis=axis)
    b = np.take(x, range(0, x.shape[axis] - lag), axis=axis)
    ok = ~np.isnan(a) & ~np.isnan(b)
    return float((a[ok] * b[ok]).mean() / np.nanmean(x * x))


def test_noise_is_correlated_like_a_real_xtremect_scan(right):
    from scipy import ndimage

    density = right.image.density()
    air = ~ndimage.binary_dilation(density > -200, iterations=6)  # far from skin
    assert air.sum() > 20_000
    sd = float(np.nanstd(np.where(air, density, np.nan)))
    assert sd == pytest.approx(right.truth_info["design"]["noise_sd_mg_ha_cm3"], rel=0.15)
    # measured in the air of ../shared/data/scanco/aluminum.aim: 0.72 / 0.32 in-plane, 0.48 / 0.20 along z
    assert _autocorrelation(density, air, 2, 1) == pytest.approx(0.71, abs=0.06)
    assert _autocorrelation(density, air, 2, 2) == pytest.approx(0.30, abs=0.06)
    assert _autocorrelation(density, air, 0, 1) == pytest.approx(0.48, abs=0.07)
    # noise runs on across the slabs the volume is rendered in (16 slices)
    across = np.corrcoef(np.where(air[15] & air[16], density[15], 0).ravel(),
                         np.where(air[15] & air[16], density[16], 0).ravel())[0, 1]
    assert across > 0.3


def test_marrow_needs_little_correction_to_hit_the_target(right):
    # the design predicts D100 well, so the offset deep in the marrow that makes it exact is small
    assert abs(right.truth_info["design"]["marrow_offset_to_hit_target_mg_ha_cm3"]) < 15.0


def test_a_volume_too_short_for_the_target_keeps_realistic_marrow():
    # 20 slices of 0.164 mm hold little more than the cortical tip of the head
    phantom = generate_phantom(PhantomSpec(seed=3, n_slices=20, spacing_mm=0.164, d100_target=160.0))
    info = phantom.truth_info
    assert abs(info["design"]["marrow_offset_to_hit_target_mg_ha_cm3"]) <= 40.0 + 0.2
    assert info["d100_mg_ha_cm3"] > info["d100_target_mg_ha_cm3"] + 50  # missed, and says so
    assert measure_vbmd(phantom.image, phantom.truth).d100_mg_ha_cm3 == pytest.approx(info["d100_mg_ha_cm3"], abs=1e-3)
