"""The hand side: resolved from the argument, a manifest or the header, or found in the image; never
assumed. The detector runs on small whole-hand fields of view (0.25 mm voxels, 9 mm along the
bones: a few seconds each, shared by the tests through session fixtures).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_vbmd.errors import CancelledError, VbmdError
from napari_vbmd.phantom import PhantomSpec, generate_phantom
from napari_vbmd.scan import UNIT_DENSITY, Scan
from napari_vbmd.segmentation.hand import (
    DECISION_CONFIDENCE,
    HandDecision,
    HandUndecidedError,
    detect_hand,
    require_hand,
    resolve_hand,
)

WHOLE_HAND = dict(fov="full", n_slices=36, spacing_mm=0.25, motion_grade=1, hand_in_header=False)


@pytest.fixture(scope="session")
def whole_right():
    return generate_phantom(PhantomSpec(seed=9, hand="right", **WHOLE_HAND))


@pytest.fixture(scope="session")
def crop_left():
    return generate_phantom(PhantomSpec(seed=9, hand="left", fov="cropped", n_slices=36, spacing_mm=0.25,
                                        hand_in_header=False))


def _view(scan: Scan, index) -> Scan:
    return dataclasses.replace(scan, data=scan.data[index])


def test_a_whole_hand_field_is_decided_from_the_image(whole_right):
    assert whole_right.image.hand is None  # nothing in the header
    decision = detect_hand(whole_right.image)
    assert (decision.hand, decision.source) == ("right", "image")
    assert DECISION_CONFIDENCE <= decision.confidence <= 1.0
    assert decision.reason.startswith("whole-hand field") and "thumb" in decision.reason
    assert decision.to_dict() == {"hand": "right", "source": "image", "confidence": decision.confidence,
                                  "reason": decision.reason}
    # the row of heads MC2..MC5 with its radial end (where the thumb is) found in the image
    evidence = decision.evidence
    assert len(evidence.row_voxels) == 4 and evidence.thumb_voxel is not None
    assert evidence.axis_sum("u") != 0 and evidence.axis_sum("v") != 0 and evidence.axis_sum("w") != 0


@pytest.mark.parametrize("index, hand", [
    (np.s_[:, :, ::-1], "left"),  # mirror image: the other hand
    (np.s_[:, ::-1, ::-1], "right"),  # rotated 180 degrees in the slice plane: the same hand
    (np.s_[::-1], "left"),  # slices in reverse order: a mirror along z, the other hand
    (np.s_[::-1, ::-1, :], "right"),  # reversed and mirrored in y: two mirrors, the same hand
    (np.s_[:, ::-1, :], "left"),  # mirrored in y: palm up instead of down, the other hand
])
def test_the_side_is_chirality_not_position(whole_right, index, hand):
    decision = detect_hand(_view(whole_right.image, index))
    assert decision.hand == hand and decision.source == "image"


def test_a_transposed_slice_plane_is_a_mirror(whole_right):
    image = whole_right.image
    swapped = dataclasses.replace(image, data=np.ascontiguousarray(np.swapaxes(image.data, 1, 2)))
    assert detect_hand(swapped).hand == "left"


def test_a_crop_of_mc2_and_mc3_is_not_decided(crop_left):
    decision = detect_hand(crop_left.image)
    assert decision.hand is None and decision.source is None
    assert "MC2 and MC3" in decision.reason and "thumb" in decision.reason
    with pytest.raises(HandUndecidedError, match="cannot tell which hand this is .* --hand left|right"):
        require_hand(decision, crop_left.image)


def test_resolution_order_argument_manifest_header_image(whole_right, crop_left):
    crop = crop_left.image
    labelled = dataclasses.replace(crop, hand="left")
    assert resolve_hand(crop, "right").to_dict() == {"hand": "right", "source": "argument", "confidence": 1.0,
                                                      "reason": "given as right"}
    assert resolve_hand(labelled, "right").reason == "given as right; the header says left"
    assert (resolve_hand(crop, "auto", "left").hand, resolve_hand(crop, "auto", "left").source) == ("left", "manifest")
    assert resolve_hand(labelled, "auto", "RIGHT").source == "manifest"
    assert (resolve_hand(labelled).hand, resolve_hand(labelled).source) == ("left", "header")
    assert resolve_hand(labelled, None, "").source == "header"  # an empty manifest cell says nothing
    assert resolve_hand(whole_right.image).source == "image"
    assert resolve_hand(crop).hand is None  # never raises when undecided
    with pytest.raises(VbmdError, match="hand must be left or right, got 'middle'"):
        resolve_hand(crop, "middle")
    with pytest.raises(VbmdError, match="the manifest's hand must be left or right"):
        resolve_hand(crop, "auto", "both")


def test_what_cannot_be_looked_at_is_undecided_with_its_reason():
    soft = Scan(np.full((8, 40, 40), 30.0, np.float32), (0.1,) * 3, unit=UNIT_DENSITY, source="soft.aim")
    assert "no bone in the field of view" in detect_hand(soft).reason
    uncalibrated = Scan(np.zeros((8, 40, 40), np.int16), (0.1,) * 3, source="raw.nii")
    decision = detect_hand(uncalibrated)
    assert decision.hand is None and "could not be read as densities" in decision.reason
    mask = Scan(np.zeros((8, 40, 40), np.uint8), (0.1,) * 3, kind="mask")
    assert detect_hand(mask).hand is None


def test_detection_reports_progress_and_can_be_cancelled(whole_right):
    steps = []
    detect_hand(whole_right.image, progress=lambda *a: steps.append(a[:2]))
    assert steps[0] == (0, 2) and steps[-1] == (2, 2)
    with pytest.raises(CancelledError):
        detect_hand(whole_right.image, cancel=lambda: True)


def test_decisions_compare_by_their_answer_not_their_evidence(whole_right):
    a = detect_hand(whole_right.image)
    b = HandDecision(a.hand, a.source, a.confidence, a.reason)
    assert a == b and b.evidence is None
    assert HandDecision(None, None, None, "x").describe() == "undecided"
    assert HandDecision("left", "header", 1.0, "x").describe() == "left (header)"
