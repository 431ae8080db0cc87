"""Slice flags and the review store."""
from __future__ import annotations

import json

import numpy as np
import pytest

from napari_vbmd.errors import VbmdError
from napari_vbmd.review import (
    REASON_AREA,
    REASON_NEIGHBOUR,
    REASON_NOTCH,
    REASON_SHAPE,
    REASON_UNCERTAIN,
    ReviewStore,
    flag_slices,
    next_slice,
    review_path,
)


def _disc(shape, cy, cx, r):
    y, x = np.ogrid[: shape[0], : shape[1]]
    return (y - cy) ** 2 + (x - cx) ** 2 <= r**2


def _tube(n=10, shape=(40, 40), r=8):
    mask = np.zeros((n, *shape), np.uint8)
    for z in range(n):
        mask[z] = _disc(shape, 20, 20, r)
    return mask


def test_a_steady_tube_has_no_flags():
    assert flag_slices(_tube()) == []


def test_abrupt_area_change_is_flagged_on_that_slice():
    mask = _tube()
    mask[6] = _disc((40, 40), 20, 20, 12)  # area x2.25 from slice 5, and back on slice 7
    flags = {f.slice_index: f for f in flag_slices(mask)}
    assert set(flags) == {6, 7}
    assert REASON_AREA in flags[6].reasons
    assert flags[6].details["area_change"] == pytest.approx(_disc((40, 40), 20, 20, 12).sum() / _disc((40, 40), 20, 20, 8).sum() - 1)
    assert "area changes" in flags[6].describe()


def test_shape_change_without_area_change_is_flagged():
    mask = _tube()
    mask[4] = _disc((40, 40), 20, 30, 8)  # same area, moved by 10 px
    flags = {f.slice_index: f for f in flag_slices(mask)}
    assert REASON_SHAPE in flags[4].reasons and REASON_AREA not in flags[4].reasons
    assert flags[4].details["overlap"] < 0.75


def test_uncertain_probability_along_the_contour_is_flagged():
    mask = _tube()
    probability = np.where(mask, 230, 10).astype(np.uint8)  # confident everywhere
    probability[3] = np.where(mask[3], 140, 110)  # near 0.5 on slice 3
    flags = flag_slices(mask, probability=probability)
    assert [f.slice_index for f in flags] == [3]
    assert flags[0].reasons == [REASON_UNCERTAIN]
    floats = probability.astype(np.float32) / 255  # float probabilities give the same answer
    assert [f.slice_index for f in flag_slices(mask, probability=floats)] == [3]


def test_dense_bone_next_to_the_mask_is_flagged():
    mask = _tube()
    density = np.full(mask.shape, 50.0, np.float32)
    density[mask != 0] = 800.0
    density[8][_disc((40, 40), 20, 31, 4)] = 900.0  # a neighbour touching the contour at x=28
    flags = flag_slices(mask, density=density)
    assert [f.slice_index for f in flags] == [8]
    assert flags[0].reasons == [REASON_NEIGHBOUR]
    assert flags[0].details["neighbour_area_mm2"] >= 0.5  # 1 mm pixels in these synthetic slices
    assert "mm² of bone outside the mask" in flags[0].describe()


def test_the_blur_halo_along_the_mask_edge_is_not_a_neighbour():
    from scipy import ndimage

    mask = _tube()
    density = np.full(mask.shape, 50.0, np.float32)
    density[mask != 0] = 800.0
    for z in range(mask.shape[0]):  # a dense one-pixel halo all around the contour (partial volume)
        density[z][ndimage.binary_dilation(mask[z] != 0) & (mask[z] == 0)] = 600.0
    assert flag_slices(mask, density=density) == []


def _bone_slices(n=6, spacing=0.082, radius_mm=7.0):
    """A round MC2-sized cross-section on an XtremeCT grid, n slices."""
    size = int(2 * radius_mm / spacing) + 40
    mask = np.zeros((n, size, size), bool)
    c = size // 2
    for z in range(n):
        mask[z] = _disc((size, size), c, c, radius_mm / spacing)
    return mask, c


def test_a_deep_notch_is_flagged_and_an_erosion_sized_pit_is_not():
    spacing = 0.082
    mask, c = _bone_slices(spacing=spacing)
    r = 7.0 / spacing
    pit = _disc(mask.shape[1:], c + r, c, 1.5 / spacing)  # a pit 1.5 mm deep at the surface
    wedge = np.zeros(mask.shape[1:], bool)  # a cut from the surface 5 mm into the marrow, 3 mm wide
    wedge[int(c + r - 5.0 / spacing):, int(c - 1.5 / spacing):int(c + 1.5 / spacing)] = True
    mask[2] &= ~pit
    mask[4] &= ~wedge
    flags = {f.slice_index: f for f in flag_slices(mask, spacing=(0.082, spacing, spacing))}
    assert list(flags) == [4]
    assert flags[4].reasons == [REASON_NOTCH]
    assert flags[4].details["notch_depth_mm"] == pytest.approx(5.0, abs=0.2)
    assert "mm deep" in flags[4].describe()
    # the pit is measured, and far below the limit
    shallow = flag_slices(mask, spacing=(spacing, spacing), notch_mm=1.0)
    assert {f.slice_index for f in shallow} == {2, 4}
    assert [f.details["notch_depth_mm"] for f in shallow if f.slice_index == 2][0] == pytest.approx(1.5, abs=0.2)


def test_a_confident_network_upsampled_to_the_scan_is_not_unsure_but_a_wide_band_is():
    """Probabilities interpolated from a 0.3 mm grid cross the threshold over ~0.2 mm at 82 um: every
    contour pixel is "near the threshold", yet the network was sure. A band ~1 mm wide is not."""
    from scipy import ndimage

    spacing = 0.082
    mask, c = _bone_slices(n=4, spacing=spacing)
    inside_mm = ndimage.distance_transform_edt(mask[0], sampling=spacing) - ndimage.distance_transform_edt(
        ~mask[0], sampling=spacing)
    sharp = 1.0 / (1.0 + np.exp(-inside_mm / 0.05))  # 0.2 -> 0.6 over ~0.1 mm
    vague = 1.0 / (1.0 + np.exp(-inside_mm / 0.8))  # over ~1.4 mm
    probability = np.stack([sharp, sharp, vague, sharp]).astype(np.float32)
    flags = flag_slices(mask, probability=probability, threshold=0.5, spacing=(spacing, spacing))
    assert [f.slice_index for f in flags] == [2]
    assert flags[0].reasons == [REASON_UNCERTAIN]
    assert flags[0].details["uncertain_width_mm"] > 0.3
    strict = flag_slices(mask, probability=probability, spacing=(spacing, spacing), uncertain_width_mm=0.15)
    assert [f.slice_index for f in strict] == [2]


def test_spacing_must_be_positive_millimetres():
    for bad in ((0.0, 0.1), (0.1,), (0.1, -1.0, 0.1), (float("nan"), 0.1)):
        with pytest.raises(VbmdError, match="spacing"):
            flag_slices(_tube(), spacing=bad)


def test_next_slice_wraps_around_and_goes_backwards():
    mask = _tube(12)
    for z in (2, 9):
        mask[z] = _disc((40, 40), 20, 20, 13)
    flags = flag_slices(mask)
    indices = [f.slice_index for f in flags]
    assert indices == [2, 3, 9, 10]
    assert next_slice(flags, 3) == 9
    assert next_slice(flags, 10) == 2
    assert next_slice(flags, 9, backwards=True) == 3
    assert next_slice(flags, 1, backwards=True) == 10
    assert next_slice([], 4) is None


def test_bad_inputs_are_refused():
    with pytest.raises(VbmdError, match="3-D"):
        flag_slices(np.zeros((4, 4)))
    with pytest.raises(VbmdError, match="probability shape"):
        flag_slices(_tube(), probability=np.zeros((2, 2, 2)))


def test_review_store_round_trip_and_history(tmp_path):
    store = ReviewStore(case="c1", scan="/data/c1.aim")
    store.mark_slice(4, "flagged", "cortex missed", reviewer="ann")
    store.mark_slice(5, "reviewed", reviewer="ann")
    store.mark_slice(5, "unreviewed", reviewer="bob")  # taking a verdict back removes it
    store.mark_case("reviewed", "fine after correction", reviewer="ann")
    path = store.save(review_path(tmp_path, "c1"))
    assert path.name == "c1_review.json"
    data = json.loads(path.read_text())
    assert data["slices"] == {"4": {"status": "flagged", "comment": "cortex missed", "by": "ann", "at": data["slices"]["4"]["at"]}}
    back = ReviewStore.load(path)
    assert back.status == "reviewed" and back.reviewer == "ann" and back.comment == "fine after correction"
    assert back.slice_status(4) == "flagged" and back.slice_status(5) == "unreviewed"
    assert back.counts() == {"reviewed": 0, "flagged": 1}
    assert [h["status"] for h in back.history] == ["flagged", "reviewed", "unreviewed", "reviewed"]


def test_review_store_refuses_bad_status_and_bad_files(tmp_path):
    store = ReviewStore(case="c1")
    with pytest.raises(VbmdError, match="review status"):
        store.mark_slice(1, "done")
    bad = tmp_path / "x_review.json"
    bad.write_text("{not json")
    with pytest.raises(VbmdError, match="not valid JSON"):
        ReviewStore.load(bad)
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(VbmdError, match="not a napari-vbmd review"):
        ReviewStore.load(bad)


def test_when_most_slices_are_flagged_every_flag_says_check_the_hand_side():
    from napari_vbmd.review import HAND_FLAGGED_FRACTION, REASON_HAND

    wobbly = _tube(n=12)
    for z in range(0, 12, 2):
        wobbly[z] = _disc((40, 40), 20, 20, 4)  # every other slice half the size: a mask of bits of two bones
    flags = flag_slices(wobbly, spacing=(0.1, 0.1))
    assert len(flags) >= HAND_FLAGGED_FRACTION * 12
    assert all(REASON_HAND in f.reasons for f in flags)
    assert "check the hand side: " in flags[0].describe() and "% of the mask's slices are flagged" in flags[0].describe()
    steady = _tube(n=12)
    steady[6] = _disc((40, 40), 20, 20, 4)
    assert not any(REASON_HAND in f.reasons for f in flag_slices(steady, spacing=(0.1, 0.1)))
