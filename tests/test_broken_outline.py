"""A mask whose sections broke up (gaps, holes open to the outside, pieces) is refused: the classical method's
contour fails that way under motion streaks and noise, and on the training generator's development phantoms
such masks were measured without a word with D100 errors of +10 to +50 %."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from _hand_phantoms import crop
from _inputs_helpers import assert_segment_refused
from napari_vbmd.review_hand import MAX_RAGGED_SLICES, MIN_SECTION_SOLIDITY, ragged_concern, ragged_slices
from napari_vbmd.segmentation.focus import BrokenOutlineError
from napari_vbmd.segmentation.pipeline import segment

SHAPE = (200, 300)


def _disk(centre, radius_px):
    yy, xx = np.ogrid[:SHAPE[0], :SHAPE[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius_px ** 2


def _ragged(section) -> bool:
    return ragged_slices(np.asarray(section)[None])[0] == 1


def test_a_bone_s_section_is_whole_however_it_is_shaped():
    yy, xx = np.ogrid[:SHAPE[0], :SHAPE[1]]
    assert not _ragged(_disk((100, 100), 40))
    assert not _ragged(((yy - 100) / 30.0) ** 2 + ((xx - 150) / 110.0) ** 2 <= 1)  # flattened 3.7:1
    assert not _ragged(_disk((100, 120), 40) | _disk((100, 175), 30))  # two lobes on a wide waist
    assert not _ragged(_disk((100, 100), 40) & ~_disk((100, 140), 18))  # a deep erosion from the side


def test_a_broken_section_is_ragged():
    ring = _disk((100, 100), 40) & ~_disk((100, 100), 30)
    open_ring = ring & ~((np.arange(SHAPE[1])[None, :] > 120) & (np.abs(np.arange(SHAPE[0])[:, None] - 100) < 8))
    assert _ragged(open_ring)  # a cortex whose ring did not close: the marrow is outside the mask
    pieces = _disk((100, 80), 20) | _disk((100, 160), 20)  # two pieces far apart
    assert _ragged(pieces)
    holey = _disk((100, 100), 40).copy()
    holey[:, ::2] = False  # combed by streaks: half its columns gone
    assert _ragged(holey)


def test_a_mask_is_a_concern_only_beyond_the_fraction():
    volume = np.zeros((40,) + SHAPE, bool)
    volume[:] = _disk((100, 100), 40)
    assert ragged_concern(volume) is None
    broken = _disk((100, 100), 40) & ~_disk((100, 100), 30)
    broken[:, 125:] = False  # a C open to the ulnar side
    few = round(MAX_RAGGED_SLICES * 40)  # at the fraction, not beyond it
    volume[:few] = broken
    assert ragged_concern(volume) is None
    volume[few] = broken
    flag = ragged_concern(volume)
    assert flag is not None and flag.details == {"ragged_slices": few + 1, "mask_slices": 40}
    assert flag.description.startswith(f"the mask's sections are broken on {few + 1} of its 40 slices (they fill "
                                       f"less than {MIN_SECTION_SOLIDITY:.0%}")


def test_a_broken_mask_is_refused_and_nothing_is_written(tmp_path, capsys, monkeypatch):
    import napari_vbmd.segmentation.pipeline as pipeline

    case = crop(seed=9, hand="left")
    result = segment(case.image, model="classical", hand="left", threads=1)  # as it is: measured
    combed = result.mask.data.astype(bool).copy()
    combed[:, :, ::2] = False  # every slice combed by streaks

    def breaks_up(scan, *args, **kwargs):
        return dataclasses.replace(result, mask=scan.with_data(combed.astype(np.uint8), kind="mask", unit="unknown"))

    monkeypatch.setattr(pipeline, "_segment_field", breaks_up)
    with pytest.raises(BrokenOutlineError, match=r"sections are broken on \d+ of its \d+ slices .* nothing written: "
                                                 r"try another model \(the default model\)"):
        segment(case.image, model="classical", hand="left")
    network = dataclasses.replace(result, model="default")
    monkeypatch.setattr(pipeline, "_segment_field", lambda scan, *a, **k: dataclasses.replace(
        network, mask=scan.with_data(combed.astype(np.uint8), kind="mask", unit="unknown")))
    with pytest.raises(BrokenOutlineError, match=r"sections are broken .* try another model \(the classical method, "
                                                 r"or another checkpoint\)"):  # a network's mask is judged alike
        segment(case.image, model="default", hand="left")
    whole = dataclasses.replace(network, mask=result.mask)
    monkeypatch.setattr(pipeline, "_segment_field", lambda scan, *a, **k: whole)
    assert segment(case.image, model="default", hand="left").model == "default"
    monkeypatch.setattr(pipeline, "_segment_field", breaks_up)
    assert_segment_refused(capsys, tmp_path, case.image, "combed.aim", words="sections are broken")
