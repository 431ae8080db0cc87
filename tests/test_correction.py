"""Mask corrections and their statistics."""
from __future__ import annotations

import numpy as np
import pytest

from napari_vbmd.correction import (
    changed_voxels,
    copy_slice,
    correction_stats,
    erase_slices,
    fill_holes,
    interpolate_slices,
    remove_islands,
    smooth_contour,
)
from napari_vbmd.errors import VbmdError


def _disc(r, cy=20, cx=20, shape=(40, 40)):
    y, x = np.ogrid[: shape[0], : shape[1]]
    return (y - cy) ** 2 + (x - cx) ** 2 <= r**2


def _tube(n=6, r=8):
    return np.stack([_disc(r)] * n).astype(np.uint8)


def test_fill_holes_in_one_slice_or_all():
    mask = _tube()
    mask[:, 18:22, 18:22] = 0  # a 4x4 hole in every slice
    one = fill_holes(mask, z=2)
    assert one[2].sum() == _disc(8).sum() and one[3].sum() == _disc(8).sum() - 16
    every = fill_holes(mask)
    assert np.array_equal(every, _tube())
    assert mask[2, 19, 19] == 0  # the input is untouched


def test_remove_islands_keeps_largest_piece():
    mask = _tube()
    mask[1, 2:4, 2:4] = 1  # an island in slice 1
    mask[4, 35:38, 35:38] = 1  # and one in slice 4
    in_slice = remove_islands(mask, z=1)
    assert in_slice[1, 2:4, 2:4].sum() == 0 and in_slice[4, 35:38, 35:38].sum() == 9
    volume = remove_islands(mask)
    assert np.array_equal(volume, _tube())


def test_smooth_contour_removes_a_spur_and_keeps_the_disc():
    mask = _tube()
    mask[3, 20, 28:34] = 1  # a one-pixel spur out of the disc
    smoothed = smooth_contour(mask, z=3)
    assert smoothed[3, 20, 31:34].sum() == 0
    assert abs(int(smoothed[3].sum()) - int(_disc(8).sum())) <= 12
    assert np.array_equal(smoothed[2], mask[2])
    with pytest.raises(VbmdError, match="positive"):
        smooth_contour(mask, sigma_px=0)


def test_copy_slice_to_next_and_to_another():
    mask = _tube()
    mask[2] = _disc(5)
    copied = copy_slice(mask, 2)
    assert np.array_equal(copied[3], _disc(5))
    assert np.array_equal(copy_slice(mask, 2, 5)[5], _disc(5))
    with pytest.raises(VbmdError, match="outside"):
        copy_slice(mask, 5)  # no slice after the last


def test_erase_the_slices_below_or_above_the_one_shown():
    mask = _tube(n=8)
    original = mask.copy()
    below = erase_slices(mask, 3, lower=True)
    assert not below[:3].any() and np.array_equal(below[3:], mask[3:]) and mask[:3].any()
    above = erase_slices(mask, 3, lower=False)
    assert not above[4:].any() and np.array_equal(above[:4], mask[:4])
    assert np.array_equal(erase_slices(mask, 0, lower=True), mask)  # nothing below the first slice
    assert below.dtype == np.uint8 and np.array_equal(mask, original)  # a new array: the input is not modified
    with pytest.raises(VbmdError, match="slice 8 is outside the mask's 0..7"):
        erase_slices(mask, 8, lower=False)


def test_interpolate_between_two_discs_grows_the_radius_linearly():
    mask = np.zeros((5, 40, 40), np.uint8)
    mask[0] = _disc(4)
    mask[4] = _disc(12)
    mask[2] = _disc(2, cx=5)  # wrong content is replaced
    out = interpolate_slices(mask, 4, 0)
    radii = [np.sqrt(out[z].sum() / np.pi) for z in range(5)]
    assert radii[1] == pytest.approx(6, abs=0.5)
    assert radii[2] == pytest.approx(8, abs=0.5)
    assert radii[3] == pytest.approx(10, abs=0.5)
    assert out[2, 20, 5] == 0
    with pytest.raises(VbmdError, match="no slices between"):
        interpolate_slices(mask, 0, 1)
    with pytest.raises(VbmdError, match="both slices"):
        interpolate_slices(mask, 1, 4)


def test_changed_voxels_and_stats_count_what_changed():
    before = _tube()
    after = before.copy()
    after[1, 0:2, 0:3] = 1  # 6 added
    after[4, 20, 20:24] = 0  # 4 removed
    indices, values = changed_voxels(before, after)
    assert len(indices[0]) == 10 and int(values.sum()) == 6
    stats = correction_stats(before, after, 300.0, 310.5)
    assert (stats.voxels_added, stats.voxels_removed, stats.slices_changed) == (6, 4, [1, 4])
    assert stats.d100_change == pytest.approx(10.5)
    assert stats.to_dict()["d100_after_mg_ha_cm3"] == 310.5


def test_mask_history_keeps_original_and_records_who_and_when():
    from napari_vbmd.session import MaskHistory

    model_mask = _tube()
    history = MaskHistory(model_mask, model="classical")
    assert history.record("fill holes", fill_holes(model_mask), "ann") is None  # nothing changed, nothing noted
    assert history.corrected_by is None and history.operations == []
    edited = copy_slice(np.where(np.arange(6)[:, None, None] == 2, 0, model_mask), 1, 2)
    edited[0] = 0
    entry = history.record("erase slice 0", edited, "ann")
    assert entry["removed"] == _disc(8).sum() and entry["slices"] == [0]
    assert history.corrected_by == "ann" and history.corrected_at
    assert history.operations[0]["operation"] == "erase slice 0"
    assert np.array_equal(history.original, model_mask)
    assert history.stats(edited).voxels_removed == _disc(8).sum()
