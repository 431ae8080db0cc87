"""A mask that runs out of the scan at both ends is refused: a scan of the MCP joint holds MC2's head (its tip
inside the scan) and part of its shaft, so MC2 leaves the stack at one end only. On the training generator's
development phantoms the shipped model's masks that did so had carried MC2's mask across a narrow joint space
into the proximal phalanx, with no waist for the joint split to part (D100 +3.7 to +16.6 %); no truth mask of
216 touches both ends."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from _hand_phantoms import crop
from _inputs_helpers import assert_segment_refused
from napari_vbmd.review import REASON_JOINT
from napari_vbmd.review_hand import both_ends_concern
from napari_vbmd.segmentation.focus import BeyondJointError, OtherBoneError
from napari_vbmd.segmentation.joint import MIN_SIDE_MM2
from napari_vbmd.segmentation.pipeline import run, segment
from napari_vbmd.segmentation.settings import SegmentSettings

SPACING = (0.1, 0.25, 0.25)  # 0.0625 mm² a pixel


def _rod(n_slices: int, radius_px: float, shape=(60, 60)) -> np.ndarray:
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    return np.broadcast_to((yy - 30) ** 2 + (xx - 30) ** 2 <= radius_px ** 2, (n_slices,) + shape).copy()


def test_a_mask_leaving_the_stack_at_one_end_is_mc2_s_shape():
    shaft = _rod(30, 20)  # 79 mm² on every slice
    flag = both_ends_concern(shaft, SPACING)
    assert flag is not None and flag.reasons == [REASON_JOINT]
    assert flag.details["first_slice_mm2"] == pytest.approx(flag.details["last_slice_mm2"]) and \
        flag.details["first_slice_mm2"] > MIN_SIDE_MM2
    assert flag.description.startswith("the mask runs out of the scan at both ends (79 mm² of it on the first slice, "
                                       "79 mm² on the last)")
    head_inside = shaft.copy()
    head_inside[:3] = False  # the head's tip three slices in: MC2 leaves the stack proximally only
    assert both_ends_concern(head_inside, SPACING) is None
    tip_on_the_edge = shaft.copy()
    tip_on_the_edge[0] = _rod(1, 2.0)[0]  # the very tip of the dome on the first slice: 0.8 mm², no bone beyond
    assert both_ends_concern(tip_on_the_edge, SPACING) is None
    at_the_line = shaft.copy()
    at_the_line[0] = False
    at_the_line[0, :16, :20] = True  # 320 px: 20.0 mm², bone-sized only beyond it
    assert MIN_SIDE_MM2 == 20.0 and both_ends_concern(at_the_line, SPACING) is None
    at_the_line[0, 16, 0] = True
    assert both_ends_concern(at_the_line, SPACING) is not None
    assert both_ends_concern(shaft[:1], SPACING) is None  # one slice has no two ends


@pytest.fixture(scope="module")
def phantom():
    return crop(seed=9, hand="left")


def _beyond(result):
    """``result``'s mask carried on to the scan's first slice (as a network carries it into the phalanx)."""
    mask = result.mask.data.astype(bool).copy()
    present = np.flatnonzero(mask.any(axis=(1, 2)))
    mask[:present[0]] = mask[present[-1]]
    return dataclasses.replace(result, mask=result.mask.with_data(mask.astype(np.uint8)))


def test_a_mask_beyond_the_joint_is_refused_and_nothing_is_written(phantom, tmp_path, capsys, monkeypatch):
    import napari_vbmd.segmentation.pipeline as pipeline

    measured = segment(phantom.image, model="classical", hand="left", threads=1)
    present = np.flatnonzero(measured.mask.data.any(axis=(1, 2)))
    assert present[0] > 0 and present[-1] == phantom.image.shape[0] - 1  # MC2 leaves the stack at one end
    segment_field = pipeline._segment_field
    monkeypatch.setattr(pipeline, "_segment_field", lambda *a, **k: _beyond(segment_field(*a, **k)))
    with pytest.raises(BeyondJointError, match=r"runs out of the scan at both ends .* nothing written: try another "
                                               r"model \(the default model\), or contour MC2 by hand \(napari's "
                                               r"Segment & measure shows this mask to correct\)$"):
        segment(phantom.image, model="classical", hand="left", threads=1)
    assert issubclass(BeyondJointError, OtherBoneError)
    let_through = run(phantom.image, SegmentSettings(model="classical", hand="left", threads=1),
                      refuse_other_bone=False)
    assert let_through.mask.data[0].any()

    assert_segment_refused(capsys, tmp_path, phantom.image, "beyond.aim", words="runs out of the scan at both ends")


def test_a_slice_range_short_of_an_end_is_not_judged_at_the_ends_but_the_joint_space_still_shows(phantom,
                                                                                                  monkeypatch):
    import napari_vbmd.segmentation.pipeline as pipeline

    segment_field = pipeline._segment_field
    monkeypatch.setattr(pipeline, "_segment_field", lambda *a, **k: _beyond(segment_field(*a, **k)))
    n = phantom.image.shape[0]
    with pytest.raises(BeyondJointError) as refused:
        segment(phantom.image, model="classical", hand="left", threads=1, slice_range=f"0:{n - 2}")
    assert "two bones parted by a joint space" in str(refused.value)  # the phalanx's bone inside the mask
    assert "runs out of the scan" not in str(refused.value)
    result = run(phantom.image, SegmentSettings(model="classical", hand="left", threads=1, slice_range=f"0:{n - 2}"),
                 refuse_other_bone=False)
    assert result.mask.data[0].any() and not result.mask.data[-1].any()
