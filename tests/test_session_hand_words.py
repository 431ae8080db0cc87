"""The hand in words (napari_vbmd.session.hand_words), the same in the widget, its status line and
clipboard: the side and its source, and why the image cannot tell when it does not."""
from __future__ import annotations

from napari_vbmd.segmentation.hand import HandDecision
from napari_vbmd.session.hand_words import ask_words, decision_words, hand_evidence, why_undecided

CROP_REASON = ("no row of four metacarpal heads in the field of view (2 whole bone sections found): a field cropped "
               "to MC2 and MC3 cannot tell the hand, since MC2 and MC3 are alike and the thumb, MC4 and MC5 are "
               "outside it")


def test_a_decided_hand_says_where_it_came_from():
    assert decision_words(HandDecision("left", "argument", 1.0, "given as left")) == "left (you chose)"
    assert decision_words(HandDecision("right", "header", 1.0, "the file's header says right")) == \
        "right (from the file's header)"
    assert decision_words(HandDecision("left", "manifest", 1.0, "the manifest says left")) == "left (from the manifest)"
    image = HandDecision("left", "image", 0.9968, "whole-hand field: radial-ulnar: head sizes")
    assert decision_words(image) == "left (found in the image, confidence 0.997)"
    assert hand_evidence(image) == "whole-hand field: radial-ulnar: head sizes"
    assert hand_evidence(HandDecision("left", "argument", 1.0, "given as left")) == ""
    assert hand_evidence(HandDecision("left", "argument", 1.0, "given as left; the header says right")) == \
        "given as left; the header says right"


def test_an_undecided_hand_says_why_in_a_few_words():
    assert decision_words(HandDecision(None, None, None, CROP_REASON)) == "undecided"
    assert ask_words(HandDecision(None, None, None, CROP_REASON)) == \
        "choose the hand: the image cannot tell (a crop of MC2 and MC3)"
    lean = HandDecision(None, None, 0.81, "the image leans right but not enough (confidence 0.810 < 0.95): ...")
    assert why_undecided(lean) == "the image is not sure enough (it leans right, confidence 0.81)"
    assert why_undecided(HandDecision(None, None, None, "the image could not be read as densities (no calibration)")) \
        == "the image cannot tell (it could not be read as densities)"
    assert why_undecided(HandDecision(None, None, None, "no bone in the field of view to tell the hand from")) == \
        "the image cannot tell (no bone to tell it from)"
    assert why_undecided(HandDecision(None, None, 0.7, "the image does not establish every direction of the hand")) \
        == "the image cannot tell (its cues are too weak or disagree)"
